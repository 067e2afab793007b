"""The Slack stand-in, driven over HTTP by the real slack_sdk clients the bot uses."""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.webhook import WebhookClient

from infra.local.slack import PNG_SIGNATURE, File, Message, SlackStandIn

CHANNEL = "C0JOBS"


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def standin(events: list[dict[str, Any]]) -> Iterator[SlackStandIn]:
    with SlackStandIn(on_call=events.append) as standin:
        yield standin


def web_client(standin: SlackStandIn, **kwargs: Any) -> WebClient:
    """A WebClient as the bot builds it; no retry handlers unless a test passes some."""
    kwargs.setdefault("retry_handlers", [])
    return WebClient(token=standin.bot_token, base_url=standin.api_url, **kwargs)


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return web_client(standin)


def slack_error(excinfo: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(excinfo.value.response["error"])


def test_urls_point_at_the_picked_port(standin: SlackStandIn) -> None:
    assert standin.url.startswith("http://127.0.0.1:")
    assert not standin.url.endswith(":0/")
    assert standin.api_url == standin.url + "api/"


def test_auth_test_answers_the_bot_identity(standin: SlackStandIn, client: WebClient) -> None:
    answer = client.auth_test()

    assert answer["ok"] is True
    assert (answer["team_id"], answer["user_id"], answer["bot_id"]) == (
        standin.team_id,
        standin.bot_user_id,
        standin.bot_id,
    )
    assert answer["url"] == standin.url


def test_wrong_or_missing_token_is_refused_like_slack(standin: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as wrong:
        WebClient(token="xoxb-someone-else", base_url=standin.api_url).auth_test()
    missing = requests.post(standin.api_url + "auth.test", timeout=5)

    assert slack_error(wrong) == "invalid_auth"
    assert wrong.value.response.status_code == 200
    assert missing.status_code == 200
    assert missing.json() == {"ok": False, "error": "not_authed"}


def test_token_form_field_is_accepted_and_never_recorded(standin: SlackStandIn, events: list[dict[str, Any]]) -> None:
    answer = requests.post(
        standin.api_url + "chat.postMessage", data={"token": standin.bot_token, "channel": CHANNEL, "text": "hi"}
    ).json()

    assert answer["ok"] is True
    assert events == [{"slack": "chat.postMessage", "args": {"channel": CHANNEL, "text": "hi"}}]
    assert standin.calls[0].args == {"channel": CHANNEL, "text": "hi"}


def test_unknown_method(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("chat.teleport", json={"channel": CHANNEL})

    assert slack_error(excinfo) == "unknown_method"


def test_post_thread_and_update_keep_the_channel_as_slack_shows_it(standin: SlackStandIn, client: WebClient) -> None:
    card_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Job abc* queued"}}]
    card = client.chat_postMessage(channel=CHANNEL, text="Job abc queued", blocks=card_blocks)
    reply = client.chat_postMessage(channel=CHANNEL, thread_ts=card["ts"], text="instance launched")
    # A reply to a reply lands under the thread's parent, as in Slack.
    nested = client.chat_postMessage(channel=CHANNEL, thread_ts=reply["ts"], text="training started")
    updated = client.chat_update(channel=CHANNEL, ts=card["ts"], text="Job abc running")

    assert card["channel"] == CHANNEL
    assert card["message"]["blocks"] == card_blocks
    assert float(card["ts"]) < float(reply["ts"]) < float(nested["ts"])
    assert updated["ts"] == card["ts"]
    assert [m.text for m in standin.messages(CHANNEL)] == ["Job abc running", "instance launched", "training started"]
    assert [(m.text, m.thread_ts) for m in standin.thread(CHANNEL, card["ts"])] == [
        ("instance launched", card["ts"]),
        ("training started", card["ts"]),
    ]
    [current, *_] = standin.messages(CHANNEL)
    # An update without blocks keeps the card's blocks, and the replaced version is kept.
    assert current.blocks == card_blocks
    assert [(e.text, e.blocks) for e in current.edits] == [("Job abc queued", card_blocks)]
    assert standin.messages("C0OTHER") == []


def test_update_with_empty_blocks_removes_them(standin: SlackStandIn, client: WebClient) -> None:
    card = client.chat_postMessage(channel=CHANNEL, text="t", blocks=[{"type": "divider"}])
    client.chat_update(channel=CHANNEL, ts=card["ts"], text="plain", blocks=[])

    [message] = standin.messages(CHANNEL)
    assert (message.text, message.blocks) == ("plain", [])
    assert len(message.edits) == 1


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
@pytest.mark.parametrize(
    ("method", "kwargs", "error"),
    [
        ("chat_postMessage", {"channel": "", "text": "x"}, "channel_not_found"),
        ("chat_postMessage", {"channel": CHANNEL}, "no_text"),
        ("chat_postMessage", {"channel": CHANNEL, "text": "x", "thread_ts": "1.000001"}, "thread_not_found"),
        ("chat_postMessage", {"channel": CHANNEL, "blocks": [{"text": "no type"}]}, "invalid_blocks"),
        ("chat_update", {"channel": CHANNEL, "ts": "1.000001", "text": "x"}, "message_not_found"),
        ("chat_update", {"channel": "", "ts": "1.000001", "text": "x"}, "channel_not_found"),
        ("chat_postEphemeral", {"channel": CHANNEL, "user": "", "text": "x"}, "invalid_arguments"),
        ("chat_postEphemeral", {"channel": "", "user": "U1", "text": "x"}, "channel_not_found"),
    ],
)
def test_message_errors(
    standin: SlackStandIn, client: WebClient, method: str, kwargs: dict[str, Any], error: str
) -> None:
    with pytest.raises(SlackApiError) as excinfo:
        getattr(client, method)(**kwargs)

    assert slack_error(excinfo) == error
    assert standin.messages(CHANNEL) == []
    assert standin.ephemerals() == []
    assert [c.status for c in standin.calls] == [200]


def test_ephemerals_reach_one_user_and_stay_out_of_the_channel(standin: SlackStandIn, client: WebClient) -> None:
    answer = client.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="only you")

    [ephemeral] = standin.ephemerals(CHANNEL, "U0ALICE")
    assert (ephemeral.ts, ephemeral.text, ephemeral.ephemeral_user) == (answer["message_ts"], "only you", "U0ALICE")
    assert standin.ephemerals(user="U0BOB") == []
    assert standin.messages(CHANNEL) == []
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel=CHANNEL, ts=answer["message_ts"], text="edited")
    assert slack_error(excinfo) == "message_not_found"


def test_form_calls_read_like_json_calls(standin: SlackStandIn, client: WebClient) -> None:
    blocks = [{"type": "divider"}]
    posted = client.api_call("chat.postMessage", params={"channel": CHANNEL, "text": "x", "blocks": json.dumps(blocks)})
    permalink = client.chat_getPermalink(channel=CHANNEL, message_ts=posted["ts"])

    assert standin.calls_to("chat.postMessage")[0].args == {"channel": CHANNEL, "text": "x", "blocks": blocks}
    assert standin.messages(CHANNEL)[0].blocks == blocks
    assert permalink["permalink"] == f"{standin.url}archives/{CHANNEL}/p{posted['ts'].replace('.', '')}"


def test_files_upload_v2_shares_the_bytes_in_the_thread(standin: SlackStandIn, client: WebClient) -> None:
    chart = bytes(range(256)) * 40
    card = client.chat_postMessage(channel=CHANNEL, text="Job abc finished")

    answer = client.files_upload_v2(
        channel=CHANNEL,
        thread_ts=card["ts"],
        content=chart,
        filename="chart.png",
        title="mAP and loss",
        initial_comment="Training curves",
    )

    [shared] = standin.thread(CHANNEL, card["ts"])
    assert shared.text == "Training curves"
    assert shared.files == [File(answer["file"]["id"], "chart.png", "mAP and loss", chart)]
    assert [c.method for c in standin.calls] == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "files.upload",
        "files.completeUploadExternal",
    ]
    assert standin.calls[3].args["files"] == [{"id": answer["file"]["id"], "title": "mAP and loss"}]


def test_multipart_upload_is_stored(standin: SlackStandIn, client: WebClient) -> None:
    ticket = client.files_getUploadURLExternal(filename="best.pt", length=5)
    requests.post(ticket["upload_url"], files={"file": ("best.pt", b"\x00\x01\r\n\xff")}, timeout=5).raise_for_status()
    client.files_completeUploadExternal(files=[{"id": ticket["file_id"]}], channel_id=CHANNEL)

    [message] = standin.messages(CHANNEL)
    assert message.files == [File(ticket["file_id"], "best.pt", "best.pt", b"\x00\x01\r\n\xff")]


def test_completing_an_upload_that_never_arrived_or_differs_fails(standin: SlackStandIn, client: WebClient) -> None:
    missing = client.files_getUploadURLExternal(filename="a.txt", length=3)
    short = client.files_getUploadURLExternal(filename="b.txt", length=10)
    requests.post(short["upload_url"], data=b"abc", timeout=5).raise_for_status()

    with pytest.raises(SlackApiError) as never_uploaded:
        client.files_completeUploadExternal(files=[{"id": missing["file_id"]}], channel_id=CHANNEL)
    with pytest.raises(SlackApiError) as wrong_length:
        client.files_completeUploadExternal(files=[{"id": short["file_id"]}], channel_id=CHANNEL)

    assert slack_error(never_uploaded) == "file_not_found"
    assert slack_error(wrong_length) == "invalid_arguments"
    assert standin.messages(CHANNEL) == []
    assert requests.post(standin.url + "upload/v1/F404", data=b"x", timeout=5).status_code == 404


def test_rate_limit_sends_retry_after(standin: SlackStandIn, client: WebClient) -> None:
    card = client.chat_postMessage(channel=CHANNEL, text="queued")
    standin.fail("chat.update", status=429, retry_after=7)

    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel=CHANNEL, ts=card["ts"], text="running")

    assert excinfo.value.response.status_code == 429
    assert excinfo.value.response.headers["Retry-After"] == "7"
    assert slack_error(excinfo) == "ratelimited"
    assert standin.calls_to("chat.update")[0].status == 429
    assert standin.messages(CHANNEL)[0].text == "queued"


def test_rate_limit_handler_waits_out_retry_after_and_succeeds(standin: SlackStandIn) -> None:
    client = web_client(standin, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=3)])
    card = client.chat_postMessage(channel=CHANNEL, text="queued")
    standin.fail("chat.update", status=429, retry_after=1, for_seconds=0.5)

    answer = client.chat_update(channel=CHANNEL, ts=card["ts"], text="running")

    updates = standin.calls_to("chat.update")
    assert answer["ok"] is True
    assert [c.status for c in updates] == [429, 200]
    assert updates[1].at - updates[0].at >= 1.0
    assert standin.messages(CHANNEL)[0].text == "running"


def test_server_error_then_recovery_with_retry_handler(standin: SlackStandIn) -> None:
    retry = ServerErrorRetryHandler(max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.01))
    client = web_client(standin, retry_handlers=[retry])
    standin.fail("chat.postMessage", status=503, times=2)

    answer = client.chat_postMessage(channel=CHANNEL, text="hello")

    assert answer["ok"] is True
    assert [c.status for c in standin.calls] == [503, 503, 200]
    assert [m.text for m in standin.messages(CHANNEL)] == ["hello"]


def test_fault_answers_carry_a_body(standin: SlackStandIn) -> None:
    standin.fail("*", status=500, times=1)
    standin.fail("auth.test", status=503, times=1)
    standin.fail("auth.test", status=429, times=1)

    limited = requests.post(standin.api_url + "auth.test", timeout=5)
    unavailable = requests.post(standin.api_url + "auth.test", timeout=5)
    internal = requests.post(standin.api_url + "auth.test", timeout=5)

    assert (limited.status_code, limited.json()) == (429, {"ok": False, "error": "ratelimited"})
    assert limited.headers["Retry-After"] == "1"
    assert (unavailable.status_code, unavailable.json()) == (503, {"ok": False, "error": "service_unavailable"})
    assert (internal.status_code, internal.json()) == (500, {"ok": False, "error": "internal_error"})


def test_fault_ends_after_times(standin: SlackStandIn, client: WebClient) -> None:
    standin.fail("chat.postMessage", times=2)

    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(client.chat_postMessage(channel=CHANNEL, text="x")["ok"])
        except SlackApiError as e:
            outcomes.append(e.response.status_code)

    assert outcomes == [500, 500, True]
    assert client.auth_test()["ok"] is True  # other methods were never affected


def test_fault_ends_after_for_seconds(standin: SlackStandIn, client: WebClient) -> None:
    failed_at = time.monotonic()
    standin.fail("*", status=500, for_seconds=0.3)
    with pytest.raises(SlackApiError):
        client.auth_test()

    assert standin.wait_for(lambda: _ok(client), timeout=2)
    assert time.monotonic() - failed_at >= 0.3
    assert standin.calls[0].status == 500


def test_clear_faults(standin: SlackStandIn, client: WebClient) -> None:
    standin.fail("*", status=500)
    with pytest.raises(SlackApiError):
        client.auth_test()

    standin.clear_faults()

    assert client.auth_test()["ok"] is True


def test_fail_rejects_nonsense() -> None:
    standin = SlackStandIn()
    with pytest.raises(ValueError):
        standin.fail("chat.update", status=200)
    with pytest.raises(ValueError):
        standin.fail("chat.update", times=0)


def test_hang_is_answered_normally_afterwards(standin: SlackStandIn, client: WebClient) -> None:
    standin.fail("chat.postMessage", hang_seconds=0.3, times=1)

    started = time.monotonic()
    answer = client.chat_postMessage(channel=CHANNEL, text="late")

    assert time.monotonic() - started >= 0.3
    assert answer["ok"] is True
    assert [(c.method, c.status) for c in standin.calls] == [("chat.postMessage", 200)]


def test_hang_times_out_the_client_but_not_other_requests_or_stop(
    standin: SlackStandIn, events: list[dict[str, Any]]
) -> None:
    hang_started = time.monotonic()
    standin.fail("chat.postMessage", hang_seconds=1.5)
    patient = web_client(standin, timeout=1)

    with pytest.raises(TimeoutError):
        patient.chat_postMessage(channel=CHANNEL, text="never")
    started = time.monotonic()
    answer = web_client(standin).auth_test()
    served_in = time.monotonic() - started
    started = time.monotonic()
    standin.stop()
    stopped_in = time.monotonic() - started
    # Past the hang: a request held when the stand-in stopped must not act or report afterwards.
    time.sleep(max(0.0, hang_started + 1.6 - time.monotonic()))

    assert answer["ok"] is True
    assert served_in < 0.5
    assert stopped_in < 1.0
    assert [c.method for c in standin.calls] == ["auth.test"]
    assert [e["slack"] for e in events] == ["auth.test"]
    assert standin.messages(CHANNEL) == []


def test_response_url_posts_become_ephemeral_or_channel_messages(
    standin: SlackStandIn, events: list[dict[str, Any]]
) -> None:
    response_url = standin.new_response_url("/train", CHANNEL, "U0ALICE")
    other_url = standin.new_response_url("/train", CHANNEL, "U0BOB")

    private = WebhookClient(response_url).send(text="Starting job abc", response_type="ephemeral")
    public = WebhookClient(other_url).send(text="Job abc queued by <@U0BOB>", response_type="in_channel")

    assert (private.status_code, private.body) == (200, "ok")
    assert public.status_code == 200
    assert response_url != other_url
    assert [(m.text, m.ephemeral_user) for m in standin.ephemerals(CHANNEL)] == [("Starting job abc", "U0ALICE")]
    assert [m.text for m in standin.messages(CHANNEL)] == ["Job abc queued by <@U0BOB>"]
    assert events == [
        {
            "slack": "response",
            "command": "/train",
            "args": {"text": "Starting job abc", "response_type": "ephemeral"},
        },
        {
            "slack": "response",
            "command": "/train",
            "args": {"text": "Job abc queued by <@U0BOB>", "response_type": "in_channel"},
        },
    ]
    assert [(c.method, c.command, c.status) for c in standin.calls] == [("response", "/train", 200)] * 2
    json.dumps(events)


def test_response_url_replace_original_edits_the_earlier_answer(standin: SlackStandIn) -> None:
    webhook = WebhookClient(standin.new_response_url("/train", CHANNEL, "U0ALICE"))

    webhook.send(text="Checking dataset…")
    webhook.send(text="Job abc queued", replace_original=True)

    [answer] = standin.ephemerals(user="U0ALICE")
    assert answer.text == "Job abc queued"
    assert [e.text for e in answer.edits] == ["Checking dataset…"]


def test_response_url_errors(standin: SlackStandIn) -> None:
    webhook = WebhookClient(standin.new_response_url("/train", CHANNEL, "U0ALICE"))

    standin.fail("response", status=500, times=1)

    failed = webhook.send(text="x")
    empty = webhook.send_dict({"response_type": "ephemeral"})
    unknown = requests.post(standin.url + "commands/T0SPOTTER/1/forged", json={"text": "x"}, timeout=5)

    assert failed.status_code == 500
    assert (empty.status_code, empty.body) == (400, "no_text")
    assert unknown.status_code == 404
    assert [(c.method, c.status) for c in standin.calls] == [("response", 500), ("response", 400)]
    assert standin.ephemerals() == []


def test_on_call_streams_every_call_as_sent_without_the_token(
    standin: SlackStandIn, client: WebClient, events: list[dict[str, Any]]
) -> None:
    standin.fail("chat.postMessage", status=500, times=1)
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel=CHANNEL, text="first try")
    client.chat_postMessage(channel=CHANNEL, text="second try", blocks=[{"type": "divider"}])

    assert events == [
        # The injected fault's answer is part of the line: that call did not take.
        {"slack": "chat.postMessage", "args": {"channel": CHANNEL, "text": "first try"}, "status": 500},
        {
            "slack": "chat.postMessage",
            "args": {"channel": CHANNEL, "text": "second try", "blocks": [{"type": "divider"}]},
        },
    ]
    assert standin.bot_token not in json.dumps(events)


def test_concurrent_posts_get_unique_increasing_ts(standin: SlackStandIn, client: WebClient) -> None:
    def post_many() -> None:
        for i in range(10):
            client.chat_postMessage(channel=CHANNEL, text=str(i))

    threads = [threading.Thread(target=post_many) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    stamps = [m.ts for m in standin.messages(CHANNEL)]
    assert len(set(stamps)) == 60
    assert stamps == sorted(stamps, key=float)
    assert len(standin.calls) == 60


def test_wait_for_wakes_on_a_post_and_gives_up_at_the_timeout(standin: SlackStandIn, client: WebClient) -> None:
    poster = threading.Timer(0.1, lambda: client.chat_postMessage(channel=CHANNEL, text="done"))
    poster.start()

    assert standin.wait_for(lambda: bool(standin.messages(CHANNEL)), timeout=5)
    assert not standin.wait_for(lambda: len(standin.messages(CHANNEL)) > 1, timeout=0.1)
    poster.join()


def test_render_block_kit_card(standin: SlackStandIn) -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Job abc · shapes · yolov8n"}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "Training on <https://console.aws/i-1|i-0abc> &amp; friends"},
            "fields": [
                {"type": "mrkdwn", "text": "*Status*\nRUNNING"},
                {"type": "mrkdwn", "text": "*mAP50*\n0.91"},
            ],
        },
        {"type": "divider"},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "requested by <@U0ALICE>"}, {"type": "plain_text", "text": "spot"}],
        },
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Download weights"},
                    "url": "https://s3/w.pt",
                },
                {"type": "button", "text": {"type": "plain_text", "text": "Cancel"}, "action_id": "cancel"},
            ],
        },
    ]
    message = Message(CHANNEL, "1.000001", "fallback text", standin.bot_user_id, blocks=blocks)
    with_file = Message(
        CHANNEL, "1.000002", "Weights", standin.bot_user_id, files=[File("F1", "best.pt", "best.pt", b"123")]
    )

    assert standin.render(message) == "\n".join(
        [
            "# Job abc · shapes · yolov8n",
            "Training on i-0abc (https://console.aws/i-1) & friends",
            "  *Status* RUNNING",
            "  *mAP50* 0.91",
            "---",
            "requested by @U0ALICE | spot",
            "[Download weights](https://s3/w.pt)  [Cancel]",
        ]
    )
    assert standin.render(with_file) == "Weights\n[file: best.pt, 3 bytes]"


def _ok(client: WebClient) -> bool:
    try:
        return bool(client.auth_test()["ok"])
    except SlackApiError:
        return False


def _png(width: int = 2, height: int = 2) -> bytes:
    """A real PNG image: grey pixels, 8-bit greyscale."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_usergroups_users_list_answers_the_members_it_was_told(events: list[dict[str, Any]]) -> None:
    with SlackStandIn(on_call=events.append, usergroups={"S0MLTEAM": ["U0ALICE", "U0BOB"]}) as standin:
        client = web_client(standin)
        members = client.usergroups_users_list(usergroup="S0MLTEAM")
        standin.set_usergroup("S0ADMINS", ["U0CAROL"])
        admins = client.usergroups_users_list(usergroup="S0ADMINS")
        with pytest.raises(SlackApiError) as unknown:
            client.usergroups_users_list(usergroup="S0NOBODY")
        with pytest.raises(SlackApiError) as missing:
            client.api_call("usergroups.users.list", params={})

    assert members["ok"] is True and members["users"] == ["U0ALICE", "U0BOB"]
    assert admins["users"] == ["U0CAROL"]
    assert slack_error(unknown) == "no_such_subteam"
    assert slack_error(missing) == "invalid_arguments"
    assert events[0] == {"slack": "usergroups.users.list", "args": {"usergroup": "S0MLTEAM"}}


def test_a_png_uploaded_with_files_upload_v2_shows_in_the_stream_and_comes_back(
    standin: SlackStandIn, client: WebClient, events: list[dict[str, Any]]
) -> None:
    chart = _png()
    card = client.chat_postMessage(channel=CHANNEL, text="Job abc finished")

    answer = client.files_upload_v2(channel=CHANNEL, thread_ts=card["ts"], content=chart, filename="chart.png")

    file_id = answer["file"]["id"]
    assert [e["slack"] for e in events] == [
        "chat.postMessage",
        "files.getUploadURLExternal",
        "files.upload",
        "files.completeUploadExternal",
    ]
    assert events[1]["args"]["filename"] == "chart.png"
    assert events[2]["args"] == {"file_id": file_id, "filename": "chart.png", "bytes": len(chart), "png": True}
    assert events[3]["args"]["files"][0]["id"] == file_id
    assert standin.file_content(file_id) == chart
    assert standin.calls_to("files.upload")[0].status == 200


def test_an_upload_that_is_not_a_png_says_so(
    standin: SlackStandIn, client: WebClient, events: list[dict[str, Any]]
) -> None:
    ticket = client.files_getUploadURLExternal(filename="chart.png", length=4)
    requests.post(ticket["upload_url"], data=b"GIF8", timeout=5).raise_for_status()

    assert events[-1] == {
        "slack": "files.upload",
        "args": {"file_id": ticket["file_id"], "filename": "chart.png", "bytes": 4, "png": False},
    }
    assert standin.file_content(ticket["file_id"]) == b"GIF8"


def test_file_content_of_a_file_never_uploaded_is_a_key_error(standin: SlackStandIn, client: WebClient) -> None:
    ticket = client.files_getUploadURLExternal(filename="best.pt", length=3)

    with pytest.raises(KeyError, match="no bytes were uploaded"):
        standin.file_content(ticket["file_id"])
    with pytest.raises(KeyError):
        standin.file_content("F404")


def test_the_upload_itself_can_be_faulted(standin: SlackStandIn, client: WebClient) -> None:
    ticket = client.files_getUploadURLExternal(filename="chart.png", length=4)
    standin.fail("files.upload", status=500, times=1)

    first = requests.post(ticket["upload_url"], data=b"abcd", timeout=5)
    second = requests.post(ticket["upload_url"], data=b"abcd", timeout=5)

    assert (first.status_code, second.status_code) == (500, 200)
    assert [c.status for c in standin.calls_to("files.upload")] == [500, 200]
    assert standin.file_content(ticket["file_id"]) == b"abcd"


def test_a_button_click_response_url_answers_the_clicker_or_edits_the_clicked_message(
    standin: SlackStandIn, client: WebClient, events: list[dict[str, Any]]
) -> None:
    card = client.chat_postMessage(channel=CHANNEL, text="Job abc: running")
    answer_url = standin.new_action_response_url("cancel_job", CHANNEL, "U0ALICE", card["ts"])
    edit_url = standin.new_action_response_url("cancel_job", CHANNEL, "U0ALICE", card["ts"])

    WebhookClient(answer_url).send(text="Cancelling abc", response_type="ephemeral", replace_original=False)
    WebhookClient(edit_url).send(text="Job abc: cancelling", replace_original=True)

    assert [(m.text, m.ephemeral_user) for m in standin.ephemerals(CHANNEL)] == [("Cancelling abc", "U0ALICE")]
    [edited] = standin.messages(CHANNEL)
    assert (edited.ts, edited.text) == (card["ts"], "Job abc: cancelling")
    assert events[-2] == {
        "slack": "response",
        "action": "cancel_job",
        "args": {"text": "Cancelling abc", "response_type": "ephemeral", "replace_original": False},
    }
    assert [(c.method, c.action, c.command) for c in standin.calls_to("response")] == [
        ("response", "cancel_job", None)
    ] * 2
    with pytest.raises(KeyError):
        standin.new_action_response_url("cancel_job", CHANNEL, "U0ALICE", "1.000001")


def test_message_and_wire_show_one_message_as_slack_sends_it(standin: SlackStandIn, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*abc*"}}]
    card = client.chat_postMessage(channel=CHANNEL, text="abc", blocks=blocks)

    message = standin.message(CHANNEL, card["ts"])

    assert message is not None and message.blocks == blocks
    assert standin.wire(message) == card["message"]
    assert standin.message(CHANNEL, "1.000001") is None
