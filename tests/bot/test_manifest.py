"""slack-manifest.yaml: the app Slack installs, with exactly the bot scopes that the code's Web API calls need.

The calls are read from the code itself: every attribute call under bot/ and lambdas/ whose name is a slack_sdk
WebClient method, turned into the Web API methods it calls (from slack_sdk's own source, so `files_upload_v2`
counts as the two methods it calls). A call to a method SCOPES does not know fails until its scope is added here
and in the manifest; a scope in the manifest that no call needs fails too.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_sdk import WebClient

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "slack-manifest.yaml"
CODE = ("bot", "lambdas")
EVENTS_URL = "https://<function-url>/slack/events"

# Web API method → the bot scope it needs (None: no scope).
SCOPES: dict[str, str | None] = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "usergroups.users.list": "usergroups:read",
    "auth.test": None,
}
# Bolt's `say()` posts with chat.postMessage; `respond()` and `ack()` answer through the response URL (no scope).
BOLT_CALLS: dict[str, frozenset[str]] = {"say": frozenset({"chat.postMessage"})}

_API_CALL = re.compile(r"""api_call\(\s*["']([\w.]+)["']""")
_SELF_CALL = re.compile(r"self\.(\w+)\(")


@cache
def web_api_methods() -> dict[str, frozenset[str]]:
    """Each public WebClient method → the Web API methods it calls, itself or through other WebClient methods."""
    sources = {
        name: inspect.getsource(member)
        for name, member in vars(WebClient).items()
        if callable(member) and not name.startswith("_")
    }

    def calls(name: str, seen: frozenset[str]) -> frozenset[str]:
        source = sources[name]
        direct = set(_API_CALL.findall(source))
        for other in _SELF_CALL.findall(source):
            if other in sources and other not in seen:
                direct |= calls(other, seen | {other})
        return frozenset(direct)

    return {name: calls(name, frozenset({name})) for name in sources}


def slack_calls(source: str) -> Iterator[tuple[int, str, frozenset[str]]]:
    """(line, call as written, Web API methods) for each Slack Web API call in `source`."""
    methods = web_api_methods()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "api_call" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, ast.unparse(func), frozenset({first.value})
        elif isinstance(func, ast.Attribute) and func.attr in methods:
            yield node.lineno, ast.unparse(func), methods[func.attr]
        elif isinstance(func, ast.Name) and func.id in BOLT_CALLS:
            yield node.lineno, func.id, BOLT_CALLS[func.id]


def code_calls() -> list[tuple[str, str, frozenset[str]]]:
    """(file:line, call, Web API methods) over every .py under bot/ and lambdas/."""
    found = []
    for folder in CODE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, call, api in slack_calls(path.read_text()):
                found.append((f"{path.relative_to(ROOT)}:{line}", call, api))
    return found


def needed_scopes(calls: list[tuple[str, str, frozenset[str]]]) -> tuple[set[str], list[str]]:
    """The scopes the calls need, and the calls to Web API methods SCOPES does not know (as `where call → method`)."""
    scopes: set[str] = set()
    unknown: list[str] = []
    for where, call, api in calls:
        if not api:
            unknown.append(f"{where} {call} → (no Web API method found in slack_sdk's source)")
        for method in sorted(api):
            if method not in SCOPES:
                unknown.append(f"{where} {call} → {method}")
            elif SCOPES[method] is not None:
                scopes.add(str(SCOPES[method]))
    return scopes, unknown


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(loaded, dict)
    return loaded


def bot_scopes(manifest: dict[str, Any]) -> list[str]:
    return list(manifest["oauth_config"]["scopes"]["bot"])


def test_the_manifest_is_an_http_app_with_the_train_command(manifest: dict[str, Any]) -> None:
    assert set(manifest) <= {"_metadata", "display_information", "features", "oauth_config", "settings"}
    assert manifest["display_information"]["name"] == "Spotter"
    assert len(manifest["display_information"]["description"]) <= 140
    assert 175 <= len(manifest["display_information"]["long_description"]) <= 4000
    assert manifest["features"]["bot_user"]["display_name"]
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/train"]
    assert commands[0]["url"] == EVENTS_URL and commands[0]["description"]
    settings = manifest["settings"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": EVENTS_URL}  # the card's buttons
    assert settings["org_deploy_enabled"] is False
    assert settings["socket_mode_enabled"] is False
    assert "user" not in manifest["oauth_config"]["scopes"]  # the app acts as its bot only


def test_every_web_api_call_has_its_scope(manifest: dict[str, Any]) -> None:
    calls = code_calls()
    assert calls, "no Slack Web API call found under bot/ and lambdas/: the walk is broken"
    scopes, unknown = needed_scopes(calls)
    assert not unknown, "Web API methods with no scope in SCOPES (add it there and to the manifest):\n" + "\n".join(
        unknown
    )
    missing = scopes - set(bot_scopes(manifest))
    assert not missing, f"scopes the code needs that slack-manifest.yaml lacks: {sorted(missing)}"


def test_the_manifest_has_no_scope_that_no_call_needs(manifest: dict[str, Any]) -> None:
    scopes, _ = needed_scopes(code_calls())
    listed = bot_scopes(manifest)
    assert len(listed) == len(set(listed)), "a scope is listed twice"
    assert "commands" in listed  # the slash command's own scope
    unused = set(listed) - scopes - {"commands"}
    assert not unused, f"slack-manifest.yaml asks for scopes no call needs: {sorted(unused)}"


def test_the_walk_reads_calls_as_slack_sdk_makes_them() -> None:
    source = """
def f(client, self, say):
    client.chat_postMessage(channel="C1", text="hi")
    self.client.chat_update(channel="C1", ts="1.0", text="hi")
    client.files_upload_v2(channel="C1", file=b"", filename="chart.png")
    client.usergroups_users_list(usergroup="S1")
    client.api_call("reactions.add", json={})
    say("hi")
    store.list_active()
"""
    got = {call: api for _, call, api in slack_calls(source)}
    assert got == {
        "client.chat_postMessage": {"chat.postMessage"},
        "self.client.chat_update": {"chat.update"},
        "client.files_upload_v2": {"files.getUploadURLExternal", "files.completeUploadExternal"},
        "client.usergroups_users_list": {"usergroups.users.list"},
        "client.api_call": {"reactions.add"},
        "say": {"chat.postMessage"},
    }


def test_a_call_without_a_known_scope_is_reported() -> None:
    calls = [("bot/x.py:3", call, api) for _, call, api in slack_calls("client.conversations_history(channel='C1')")]
    scopes, unknown = needed_scopes(calls)
    assert scopes == set()
    assert unknown == ["bot/x.py:3 client.conversations_history → conversations.history"]
