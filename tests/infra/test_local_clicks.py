"""Button clicks and Slack's retries as the local stack sends them: signed, shaped as Slack's, accepted by bolt."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, get_args
from urllib.parse import parse_qs

import pytest
from slack_bolt import Ack, App, BoltRequest, Respond
from slack_bolt.adapter.aws_lambda import SlackRequestHandler
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from infra.local.interactivity import (
    BUTTONS,
    ButtonNotFound,
    block_actions_payload,
    buttons,
    find_button,
    interaction_body,
    with_block_ids,
)
from infra.local.invoke import LambdaContext
from infra.local.scenario import ButtonName
from infra.local.slack import SlackStandIn
from infra.local.slash import new_trigger_id, retry_headers, signed_event, slash_body

SECRET = "local-signing-secret"  # pragma: allowlist secret
CHANNEL = "C0TRAINING"
USER = "U0ALICE"
TEAM = "T0SPOTTER"
JOB = "shapes-abc123"
CARD_BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "shapes · yolov8n"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": f"Job `{JOB}` is running"}},
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "download_weights",
                "text": {"type": "plain_text", "text": "Download weights so far"},
                "url": "http://127.0.0.1:1/bucket/best.pt",
                "style": "primary",
            },
            {
                "type": "button",
                "action_id": "cancel_job",
                "text": {"type": "plain_text", "text": "Cancel"},
                "value": JOB,
                "style": "danger",
                "confirm": {
                    "title": {"type": "plain_text", "text": "Cancel this job?"},
                    "text": {"type": "mrkdwn", "text": "It stops."},
                    "confirm": {"type": "plain_text", "text": "Cancel the job"},
                    "deny": {"type": "plain_text", "text": "Keep it going"},
                },
            },
        ],
    },
]


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


@pytest.fixture
def card(standin: SlackStandIn) -> dict[str, Any]:
    """The card as the bot posts it, and as the channel shows it."""
    client = WebClient(token=standin.bot_token, base_url=standin.api_url)
    posted = client.chat_postMessage(channel=CHANNEL, text=f"Job {JOB}", blocks=CARD_BLOCKS)
    message = standin.message(CHANNEL, posted["ts"])
    assert message is not None
    return standin.wire(message)


def click_payload(standin: SlackStandIn, card: dict[str, Any], action_id: str) -> dict[str, Any]:
    return block_actions_payload(
        team=TEAM,
        user=USER,
        channel=CHANNEL,
        message=card,
        button=find_button(card["blocks"], action_id, "the card"),
        response_url=standin.new_action_response_url(action_id, CHANNEL, USER, card["ts"]),
        trigger_id=new_trigger_id(),
    )


def bolt_app(standin: SlackStandIn) -> App:
    """A bolt app set up as the Slack function's (signed requests, token from authorize, Lambda acks)."""
    return App(
        process_before_response=True,
        signing_secret=SECRET,
        authorize=lambda enterprise_id, team_id: AuthorizeResult(
            enterprise_id=enterprise_id, team_id=team_id, bot_token=standin.bot_token
        ),
        client=WebClient(base_url=standin.api_url),
    )


def test_the_scenario_names_every_button_there_is() -> None:
    assert set(get_args(ButtonName)) == set(BUTTONS)
    assert BUTTONS == {"cancel": "cancel_job", "logs": "show_logs", "download": "download_weights"}


def test_each_block_gets_a_block_id_that_stays_the_same_and_given_ones_are_kept() -> None:
    given = [{"type": "divider", "block_id": "mine"}, *CARD_BLOCKS]

    first, again = with_block_ids(given), with_block_ids(given)

    assert first == again
    assert first[0]["block_id"] == "mine"
    assert len({b["block_id"] for b in first}) == len(given)
    assert "block_id" not in CARD_BLOCKS[0]  # the blocks as posted are left as they were


def test_buttons_are_found_in_actions_blocks_and_section_accessories() -> None:
    accessory = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    accessory["accessory"] = {
        "type": "button",
        "action_id": "show_logs",
        "text": {"type": "plain_text", "text": "Logs"},
    }

    found = buttons([*CARD_BLOCKS, accessory])

    assert [(b.action_id, b.label) for b in found] == [
        ("download_weights", "Download weights so far"),
        ("cancel_job", "Cancel"),
        ("show_logs", "Logs"),
    ]


def test_a_button_that_is_not_there_is_an_error_listing_the_buttons_that_are() -> None:
    with pytest.raises(ButtonNotFound) as e:
        find_button(CARD_BLOCKS, "show_logs", f"the card of job {JOB}")

    assert str(e.value) == (
        f"the card of job {JOB} has no button with action_id show_logs; its buttons: "
        "'Download weights so far' (download_weights), 'Cancel' (cancel_job)"
    )
    with pytest.raises(ButtonNotFound, match="its buttons: none"):
        find_button(CARD_BLOCKS[:2], "cancel_job", "the card")


def test_a_click_payload_has_the_shape_slack_sends(standin: SlackStandIn, card: dict[str, Any]) -> None:
    payload = click_payload(standin, card, "cancel_job")

    assert payload["type"] == "block_actions"
    assert payload["user"] == {"id": USER, "username": "u0alice", "name": "u0alice", "team_id": TEAM}
    assert payload["team"]["id"] == TEAM and payload["channel"]["id"] == CHANNEL
    assert payload["container"] == {
        "type": "message",
        "message_ts": card["ts"],
        "channel_id": CHANNEL,
        "is_ephemeral": False,
    }
    assert payload["response_url"].startswith(standin.url + "actions/")
    assert payload["trigger_id"]
    assert payload["message"]["ts"] == card["ts"] and payload["message"]["text"] == card["text"]
    actions_block = payload["message"]["blocks"][2]
    (action,) = payload["actions"]
    assert action["action_id"] == "cancel_job" and action["type"] == "button"
    assert action["value"] == JOB
    assert action["block_id"] == actions_block["block_id"]
    assert action["text"] == {"type": "plain_text", "text": "Cancel"}
    assert abs(float(action["action_ts"]) - time.time()) < 60


def test_a_url_button_still_sends_its_action(standin: SlackStandIn, card: dict[str, Any]) -> None:
    (action,) = click_payload(standin, card, "download_weights")["actions"]

    assert action["action_id"] == "download_weights"
    assert action["url"] == "http://127.0.0.1:1/bucket/best.pt"
    assert "value" not in action


def test_a_click_is_posted_form_encoded_and_signed_like_slack(standin: SlackStandIn, card: dict[str, Any]) -> None:
    payload = click_payload(standin, card, "cancel_job")

    event = signed_event(SECRET, interaction_body(payload))

    headers, body = event["headers"], event["body"]
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert SignatureVerifier(SECRET).is_valid(
        body=body, timestamp=headers["x-slack-request-timestamp"], signature=headers["x-slack-signature"]
    )
    assert not SignatureVerifier("another-secret").is_valid(
        body=body, timestamp=headers["x-slack-request-timestamp"], signature=headers["x-slack-signature"]
    )
    form = parse_qs(body)
    assert list(form) == ["payload"]
    assert json.loads(form["payload"][0]) == payload
    assert event["requestContext"]["http"]["method"] == "POST"


def test_bolt_routes_the_click_to_its_action_listener_and_the_answer_reaches_the_clicker(
    standin: SlackStandIn, card: dict[str, Any]
) -> None:
    app = bolt_app(standin)
    seen: list[dict[str, Any]] = []

    @app.action("cancel_job")
    def cancel(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        seen.append(body)
        respond(text=f"Cancelling {body['actions'][0]['value']}", response_type="ephemeral", replace_original=False)

    payload = click_payload(standin, card, "cancel_job")
    event = signed_event(SECRET, interaction_body(payload))
    resp = SlackRequestHandler(app).handle(event, LambdaContext(function_name="spotter-slack"))

    assert resp["statusCode"] == 200
    assert [b["actions"][0]["value"] for b in seen] == [JOB]
    assert seen[0]["container"]["message_ts"] == card["ts"]
    [answer] = standin.calls_to("response")
    assert (answer.action, answer.args["text"]) == ("cancel_job", f"Cancelling {JOB}")
    assert [m.text for m in standin.ephemerals(CHANNEL, USER)] == [f"Cancelling {JOB}"]


def test_bolt_refuses_a_click_signed_with_another_secret(standin: SlackStandIn, card: dict[str, Any]) -> None:
    app = bolt_app(standin)
    seen: list[dict[str, Any]] = []

    @app.action("cancel_job")
    def cancel(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        seen.append(body)

    event = signed_event(SECRET, interaction_body(click_payload(standin, card, "cancel_job")), "bad")
    resp = SlackRequestHandler(app).handle(event, LambdaContext(function_name="spotter-slack"))

    assert resp["statusCode"] == 401
    assert seen == []


def test_retry_headers_are_slacks() -> None:
    assert retry_headers(1) == {"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"}
    assert retry_headers(3)["x-slack-retry-num"] == "3"


def test_a_retried_slash_command_is_the_same_body_signed_afresh_with_the_retry_headers(
    standin: SlackStandIn,
) -> None:
    app = bolt_app(standin)
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    @app.command("/train")
    def train(ack: Ack, body: dict[str, Any], request: BoltRequest) -> None:
        ack(text="queued")
        seen.append((body, dict(request.headers)))

    body = slash_body(
        command="/train",
        text="shapes yolov8n",
        user=USER,
        channel=CHANNEL,
        team=TEAM,
        response_url=standin.new_response_url("/train", CHANNEL, USER),
        trigger_id=new_trigger_id(),
    )
    first = signed_event(SECRET, body, now=time.time() - 30)
    retried = signed_event(SECRET, body, headers=retry_headers(1))
    adapter = SlackRequestHandler(app)
    answers = [adapter.handle(e, LambdaContext(function_name="spotter-slack")) for e in (first, retried)]

    assert [a["statusCode"] for a in answers] == [200, 200]
    assert retried["body"] == first["body"]
    assert retried["headers"]["x-slack-request-timestamp"] != first["headers"]["x-slack-request-timestamp"]
    assert retried["headers"]["x-slack-signature"] != first["headers"]["x-slack-signature"]
    (first_body, first_headers), (retry_body, retry_headers_seen) = seen
    assert first_body["trigger_id"] == retry_body["trigger_id"]
    assert "x-slack-retry-num" not in first_headers
    assert retry_headers_seen["x-slack-retry-num"] == ["1"]
    assert retry_headers_seen["x-slack-retry-reason"] == ["http_timeout"]
