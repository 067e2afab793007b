"""Button clicks as Slack sends them: a `block_actions` interaction payload, form-encoded as `payload=<json>`.

Slack sends one when someone clicks a button on a message the app posted (after the button's `confirm`
dialog, when it has one; a URL button opens its link and still sends the action). The payload carries who
clicked where, the message as it reads now (each block with its block_id: Slack assigns one to every block
posted without), the button as the action, a response_url for answering the click, and a trigger_id.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from infra.local.slash import API_APP_ID, CHANNEL_NAME, TEAM_DOMAIN, VERIFICATION_TOKEN

# The scenario's names for the card's buttons, and the action_id each button has on the card.
BUTTONS = {"cancel": "cancel_job", "logs": "show_logs", "download": "download_weights"}


class ButtonNotFound(LookupError):
    """The message has no button with the action_id a click names."""


@dataclass(frozen=True)
class Button:
    block_id: str
    element: dict[str, Any]

    @property
    def action_id(self) -> str:
        return str(self.element.get("action_id", ""))

    @property
    def label(self) -> str:
        text = self.element.get("text")
        return str(text.get("text", "")) if isinstance(text, dict) else str(text or "")


def _generated_block_id(block: dict[str, Any], index: int) -> str:
    """A block_id for a block posted without one: short and fixed for the block's content, as Slack's are."""
    digest = hashlib.sha256(f"{index}:{json.dumps(block, sort_keys=True)}".encode()).digest()
    return base64.b64encode(digest[:3]).decode()


def with_block_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks as Slack stores them: each has a block_id (the app's own, or one Slack assigned)."""
    out = copy.deepcopy(blocks)
    for i, block in enumerate(out):
        block.setdefault("block_id", _generated_block_id(blocks[i], i))
    return out


def buttons(blocks: list[dict[str, Any]]) -> list[Button]:
    """Every button of the blocks (actions blocks' elements and section accessories), in order."""
    found: list[Button] = []
    for block in with_block_ids(blocks):
        elements: list[Any] = []
        if block.get("type") == "actions":
            elements = list(block.get("elements") or [])
        elif isinstance(block.get("accessory"), dict):
            elements = [block["accessory"]]
        found += [Button(block["block_id"], e) for e in elements if isinstance(e, dict) and e.get("type") == "button"]
    return found


def find_button(blocks: list[dict[str, Any]], action_id: str, where: str) -> Button:
    """The button with `action_id`; ButtonNotFound names the buttons `where` has instead."""
    present = buttons(blocks)
    for button in present:
        if button.action_id == action_id:
            return button
    listed = ", ".join(f"{b.label!r} ({b.action_id})" for b in present) or "none"
    raise ButtonNotFound(f"{where} has no button with action_id {action_id}; its buttons: {listed}")


def block_actions_payload(
    *,
    team: str,
    user: str,
    channel: str,
    message: dict[str, Any],
    button: Button,
    response_url: str,
    trigger_id: str,
    action_ts: str | None = None,
) -> dict[str, Any]:
    """The interaction payload of a click on `button` in `message` (the message object Slack returns for it)."""
    shown = {**message, "blocks": with_block_ids(message.get("blocks") or [])}
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message["ts"],
        "channel_id": channel,
        "is_ephemeral": False,
    }
    if message.get("thread_ts"):
        container["thread_ts"] = message["thread_ts"]
    # The action is the button as posted (text, value, url, style, confirm) where it was clicked, and when.
    action = {
        **copy.deepcopy(button.element),
        "type": "button",
        "block_id": button.block_id,
        "action_ts": action_ts or f"{time.time():.6f}",
    }
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": trigger_id,
        "team": {"id": team, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": CHANNEL_NAME},
        "message": shown,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def interaction_body(payload: dict[str, Any]) -> str:
    """The POST body Slack sends to the app's interactivity Request URL."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))})
