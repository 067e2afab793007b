"""A local Slack Web API over real HTTP: keeps the channel as Slack would show it, records every call, fails on request.

The bot reaches it with the real slack_sdk WebClient (base_url=api_url) and bolt's respond() posts to the
response_urls it issues, so serialisation, retry handlers and timeouts run exactly as they do against Slack.
"""

from __future__ import annotations

import contextlib
import copy
import html
import itertools
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

logger = logging.getLogger(__name__)

# wait_for() re-checks at least this often: predicates may also watch state the stand-in does not own.
WAIT_POLL_SECONDS = 0.05
# How often the server loop looks for a shutdown request, i.e. the longest stop() waits for it.
SERVE_POLL_SECONDS = 0.05

# Form posts carry these as JSON strings; decoding them makes form and JSON calls read the same in `calls`.
_JSON_ARGS = ("blocks", "attachments", "files", "metadata")
# Slack's own error names for the statuses it sends; other statuses get their HTTP phrase (503 → service_unavailable).
_FAULT_ERRORS = {429: "ratelimited", 500: "internal_error"}
_API_PREFIX = "/api/"
_UPLOAD_PREFIX = "/upload/v1/"
# The first bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The name calls to an upload URL are recorded (and faulted) under: they are not a Web API method.
UPLOAD_METHOD = "files.upload"

OnCall = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Call:
    """One Web API call or response_url post, with its arguments as sent (token removed) and the HTTP status."""

    method: str
    args: dict[str, Any]
    status: int
    at: float
    command: str | None = None  # the slash command a response_url post answers
    action: str | None = None  # the action_id of the button click a response_url post answers


@dataclass(frozen=True)
class File:
    """A file shared through files.getUploadURLExternal, the upload and files.completeUploadExternal."""

    id: str
    name: str
    title: str
    content: bytes


@dataclass
class Message:
    """A message as the channel shows it now; `edits` holds the versions chat.update replaced, oldest first."""

    channel: str
    ts: str
    text: str
    user: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    files: list[File] = field(default_factory=list)
    edits: list[Message] = field(default_factory=list)
    ephemeral_user: str | None = None


@dataclass
class _Fault:
    method: str
    status: int
    error: str
    retry_after: int | None
    until: float | None  # time.monotonic() deadline
    remaining: int | None
    hang_seconds: float | None

    def matches(self, method: str) -> bool:
        return self.method in ("*", method)

    def expired(self, now: float) -> bool:
        return (self.until is not None and now >= self.until) or self.remaining == 0


@dataclass
class _Upload:
    file_id: str
    filename: str
    length: int
    content: bytes | None = None


@dataclass
class _ResponseTarget:
    command: str | None  # a slash command's response_url…
    channel: str
    user: str
    last: Message | None = None  # what replace_original / delete_original act on
    action: str | None = None  # …or a button click's (then `last` starts as the message holding the button)

    def event(self, args: dict[str, Any]) -> dict[str, Any]:
        """The on_call record of a post to this response_url."""
        if self.action is not None:
            return {"slack": "response", "action": self.action, "args": args}
        return {"slack": "response", "command": self.command, "args": args}


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, payload: dict[str, Any], status: int = 200, headers: Mapping[str, str] | None = None) -> _Reply:
        return cls(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers or {})

    @classmethod
    def of_text(cls, body: str, status: int = 200) -> _Reply:
        return cls(status, body.encode(), "text/plain; charset=utf-8")


class _ApiError(Exception):
    """A Slack error answer (`{"ok": false, "error": ...}`); raised by a method, turned into a reply in one place."""

    def __init__(self, error: str, detail: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.detail = detail

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"ok": False, "error": self.error}
        if self.detail:
            payload["response_metadata"] = {"messages": [f"[ERROR] {self.detail}"]}
        return payload


class SlackStandIn:
    """Answers the Slack Web API methods Spotter uses, each request in its own daemon thread.

    `on_call` gets `{"slack": method, "args": {...}}` (or `{"slack": "response", "command"|"action", "args"}` for a
    response_url post, `{"slack": "files.upload", "args": {"file_id", "filename", "bytes", "png"}}` for the bytes
    sent to an upload URL) for every call, faulted ones included, before the caller gets its answer. It runs while
    requests are serialised, so it must not call the stand-in over HTTP; reading `calls` or `messages()` is fine.

    `usergroups` maps user group ids (S…) to their members' user ids, for `usergroups.users.list`.
    """

    team_id = "T0SPOTTER"
    team_name = "Spotter (local)"
    bot_user_id = "U0SPOTTER"
    bot_user_name = "spotter"
    bot_id = "B0SPOTTER"

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-local-token",
        host: str = "127.0.0.1",
        port: int = 0,
        on_call: OnCall | None = None,
        usergroups: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.on_call = on_call
        self._usergroups: dict[str, list[str]] = {g: list(users) for g, users in (usergroups or {}).items()}
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # One request is handled at a time (after any hang), so `calls`, the channel and on_call output agree on order.
        self._serial = threading.Lock()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._calls: list[Call] = []
        self._messages: dict[tuple[str, str], Message] = {}
        self._ephemerals: list[Message] = []
        self._faults: list[_Fault] = []
        self._uploads: dict[str, _Upload] = {}
        self._response_targets: dict[str, _ResponseTarget] = {}
        self._ids = itertools.count(1)
        self._last_ts_micro = 0
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._get_permalink,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "usergroups.users.list": self._usergroup_users,
        }

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> SlackStandIn:
        if self._server is not None:
            raise RuntimeError("the Slack stand-in is already started")
        self._server = _Server(self._address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SERVE_POLL_SECONDS},
            name="slack-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests held by a hang are dropped rather than waited for."""
        if self._server is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Slack stand-in has no address until start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def api_url(self) -> str:
        return self.url + "api/"

    # -- control -----------------------------------------------------------------------------------------------

    def new_response_url(self, command: str, channel: str, user: str) -> str:
        """A response_url for one slash command invocation, as Slack puts in the command's payload."""
        with self._lock:
            path = f"/commands/{self.team_id}/{next(self._ids)}/{secrets.token_hex(12)}"
            self._response_targets[path] = _ResponseTarget(command, channel, user)
        return self.url.rstrip("/") + path

    def new_action_response_url(self, action_id: str, channel: str, user: str, message_ts: str) -> str:
        """A response_url for one button click on the message `message_ts`, as Slack puts in a block_actions
        payload: replace_original and delete_original act on that message."""
        with self._lock:
            message = self._messages.get((channel, message_ts))
            if message is None:
                raise KeyError(f"no message {message_ts} in {channel}")
            path = f"/actions/{self.team_id}/{next(self._ids)}/{secrets.token_hex(12)}"
            self._response_targets[path] = _ResponseTarget(None, channel, user, last=message, action=action_id)
        return self.url.rstrip("/") + path

    def set_usergroup(self, usergroup: str, users: Sequence[str]) -> None:
        """Make `usergroup` (an S… id) have exactly these members."""
        with self._lock:
            self._usergroups[usergroup] = list(users)

    def fail(
        self,
        method: str,
        *,
        status: int = 500,
        retry_after: int | None = None,
        for_seconds: float | None = None,
        times: int | None = None,
        hang_seconds: float | None = None,
    ) -> None:
        """Make calls to `method` ("chat.update", "response" for response_url posts, "files.upload" for the bytes
        sent to an upload URL, "*" for all) fail.

        A 429 carries `Retry-After` (1 s unless `retry_after` says otherwise). With `hang_seconds` the request is
        held that long and then answered normally, whatever `status` says. The fault ends after `for_seconds`,
        after `times` requests, or at clear_faults(); the newest matching fault wins.
        """
        if not method:
            raise ValueError("method must be a Web API method name, 'response' or '*'")
        if not 400 <= status <= 599 or status not in HTTPStatus._value2member_map_:
            raise ValueError(f"a fault needs a known HTTP error status, not {status}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        if for_seconds is not None and for_seconds <= 0:
            raise ValueError("for_seconds must be positive")
        if hang_seconds is not None and hang_seconds <= 0:
            raise ValueError("hang_seconds must be positive")
        if status == 429 and retry_after is None:
            retry_after = 1
        until = time.monotonic() + for_seconds if for_seconds is not None else None
        with self._lock:
            self._faults.append(
                _Fault(
                    method,
                    status,
                    _FAULT_ERRORS.get(status) or _snake(HTTPStatus(status).phrase),
                    retry_after,
                    until,
                    times,
                    hang_seconds,
                )
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- what happened -----------------------------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def messages(self, channel: str) -> list[Message]:
        """Everything posted in the channel (top-level and thread replies), oldest first, as it reads now."""
        with self._lock:
            return copy.deepcopy([m for (c, _), m in self._messages.items() if c == channel])

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The replies under the message `ts`, oldest first."""
        with self._lock:
            return copy.deepcopy([m for (c, _), m in self._messages.items() if c == channel and m.thread_ts == ts])

    def message(self, channel: str, ts: str) -> Message | None:
        """The channel's message `ts` (top-level or a reply) as it reads now, or None."""
        with self._lock:
            found = self._messages.get((channel, ts))
            return copy.deepcopy(found) if found is not None else None

    def wire(self, message: Message) -> dict[str, Any]:
        """The message object Slack sends for this message (in API answers and interaction payloads)."""
        return self._wire(message)

    def file_content(self, file_id: str) -> bytes:
        """The bytes uploaded for `file_id` (shared or not yet); KeyError when nothing was uploaded for it."""
        with self._lock:
            upload = self._uploads.get(file_id)
            if upload is None or upload.content is None:
                raise KeyError(f"no bytes were uploaded for file {file_id}")
            return upload.content

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[Message]:
        with self._lock:
            found = [
                m
                for m in self._ephemerals
                if (channel is None or m.channel == channel) and (user is None or m.ephemeral_user == user)
            ]
            return copy.deepcopy(found)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds (re-checked on every change here); False if `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = self._version
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                if self._version == seen:
                    self._changed.wait(min(remaining, WAIT_POLL_SECONDS))

    def render(self, message: Message) -> str:
        """The message as plain text for a terminal transcript: its blocks (or its text), attachments and files."""
        lines = _render_blocks(message.blocks) if message.blocks else _mrkdwn(message.text).splitlines()
        for attachment in message.attachments:
            lines += [f"| {line}" for line in _render_attachment(attachment)]
        for f in message.files:
            title = f' "{f.title}"' if f.title and f.title != f.name else ""
            lines.append(f"[file: {f.name}{title}, {len(f.content)} bytes]")
        return "\n".join(lines)

    # -- HTTP entry point --------------------------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        """Answer one request (`headers` with lower-case names); None: the stand-in stopped while holding it."""
        url = urlsplit(target)
        if url.path.startswith(_API_PREFIX):
            return self._web_api(url.path.removeprefix(_API_PREFIX), url.query, headers, body)
        if url.path.startswith(_UPLOAD_PREFIX) and method == "POST":
            return self._receive_upload(url.path.removeprefix(_UPLOAD_PREFIX), headers, body)
        with self._lock:
            response_target = self._response_targets.get(url.path)
        if response_target is not None and method == "POST":
            return self._response(response_target, body)
        return _Reply.of_text("not_found", status=404)

    def _web_api(self, name: str, query: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        parse_error: _ApiError | None = None
        try:
            args = _parse_args(query, headers.get("content-type", ""), body)
        except _ApiError as e:
            args, parse_error = {}, e
        token = args.pop("token", None) or _bearer(headers.get("authorization", ""))
        fault = self._take_fault(name)
        if fault is not None and fault.hang_seconds is not None:
            if self._stopping.wait(fault.hang_seconds):
                return None
            fault = None
        with self._serial:
            if fault is not None:
                reply = _fault_reply(fault)
            elif parse_error is not None:
                reply = _Reply.of_json(parse_error.payload())
            else:
                try:
                    reply = _Reply.of_json({"ok": True, **self._run(name, token, args)})
                except _ApiError as e:
                    reply = _Reply.of_json(e.payload())
            event: dict[str, Any] = {"slack": name, "args": args}
            if fault is not None:
                event["status"] = reply.status  # what the injected fault answered: the call did not take
            self._record(Call(name, args, reply.status, time.time()), event)
        return reply

    def _run(self, name: str, token: str | None, args: dict[str, Any]) -> dict[str, Any]:
        method = self._methods.get(name)
        if method is None:
            raise _ApiError("unknown_method")
        if not token:
            raise _ApiError("not_authed")
        if token != self.bot_token:
            raise _ApiError("invalid_auth")
        return method(args)

    def _record(self, call: Call, event: dict[str, Any]) -> None:
        with self._lock:
            self._calls.append(call)
            self._bump()
        if self.on_call is not None:
            self.on_call(event)

    def _take_fault(self, method: str) -> _Fault | None:
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if not f.expired(now)]
            for fault in reversed(self._faults):
                if fault.matches(method):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return replace(fault)
        return None

    def _bump(self) -> None:
        """Wake wait_for(); the caller holds the lock."""
        self._version += 1
        self._changed.notify_all()

    def _next_ts(self) -> str:
        # Real-looking epoch timestamps, strictly increasing even when two posts land in the same microsecond.
        micro = max(time.time_ns() // 1000, self._last_ts_micro + 1)
        self._last_ts_micro = micro
        return f"{micro // 1_000_000}.{micro % 1_000_000:06d}"

    # -- Web API methods (each returns the answer's fields besides "ok", or raises _ApiError) ---------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self.url,
            "team": self.team_name,
            "user": self.bot_user_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(args.get("channel"))
        text, blocks, attachments = _content(args)
        with self._lock:
            thread_ts = self._thread_root(channel, args.get("thread_ts"))
            message = Message(channel, self._next_ts(), text, self.bot_user_id, thread_ts, blocks, attachments)
            self._messages[(channel, message.ts)] = message
            self._bump()
            return {"channel": channel, "ts": message.ts, "message": self._wire(message)}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(args.get("channel"))
        if not any(k in args for k in ("text", "blocks", "attachments")):
            raise _ApiError("no_text")
        # chat.update keeps what the call leaves out: blocks=[] removes blocks, no blocks argument keeps them.
        blocks = _blocks(args["blocks"]) if "blocks" in args else None
        attachments = _attachments(args["attachments"]) if "attachments" in args else None
        with self._lock:
            message = self._messages.get((channel, str(args.get("ts") or "")))
            if message is None:
                raise _ApiError("message_not_found")
            self._edit(message, args.get("text"), blocks, attachments)
            return {"channel": channel, "ts": message.ts, "text": message.text, "message": self._wire(message)}

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(args.get("channel"))
        user = args.get("user")
        if not user:
            raise _ApiError("invalid_arguments", "missing required field: user")
        text, blocks, attachments = _content(args)
        with self._lock:
            thread_ts = self._thread_root(channel, args.get("thread_ts"))
            message = Message(
                channel,
                self._next_ts(),
                text,
                self.bot_user_id,
                thread_ts,
                blocks,
                attachments,
                ephemeral_user=str(user),
            )
            self._ephemerals.append(message)
            self._bump()
            return {"message_ts": message.ts}

    def _get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = _channel(args.get("channel"))
        ts = str(args.get("message_ts") or "")
        with self._lock:
            message = self._messages.get((channel, ts))
            if message is None:
                raise _ApiError("message_not_found")
            permalink = f"{self.url}archives/{channel}/p{ts.replace('.', '')}"
            if message.thread_ts:
                permalink += f"?thread_ts={message.thread_ts}&cid={channel}"
            return {"channel": channel, "permalink": permalink}

    def _get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = args.get("filename")
        if not filename:
            raise _ApiError("invalid_arguments", "missing required field: filename")
        try:
            length = int(args.get("length", ""))
        except (TypeError, ValueError):
            raise _ApiError("invalid_arguments", "length must be a number of bytes") from None
        if length < 1:
            raise _ApiError("invalid_arguments", "length must be at least 1")
        with self._lock:
            file_id = f"F{next(self._ids):010d}"
            self._uploads[file_id] = _Upload(file_id, str(filename), length)
        return {"upload_url": f"{self.url.rstrip('/')}{_UPLOAD_PREFIX}{file_id}", "file_id": file_id}

    def _usergroup_users(self, args: dict[str, Any]) -> dict[str, Any]:
        usergroup = args.get("usergroup")
        if not usergroup:
            raise _ApiError("invalid_arguments", "missing required field: usergroup")
        with self._lock:
            users = self._usergroups.get(str(usergroup))
            if users is None:
                raise _ApiError("no_such_subteam")
            return {"users": list(users)}

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        items = args.get("files")
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) and i.get("id") for i in items):
            raise _ApiError("invalid_arguments", "files must be a JSON array of {id, title}")
        channels = _share_channels(args)
        initial_comment = str(args.get("initial_comment") or "")
        with self._lock:
            files: list[File] = []
            for item in items:
                upload = self._uploads.get(str(item["id"]))
                if upload is None or upload.content is None:
                    raise _ApiError("file_not_found")
                if len(upload.content) != upload.length:
                    raise _ApiError(
                        "invalid_arguments",
                        f"{upload.file_id}: uploaded {len(upload.content)} bytes, declared length {upload.length}",
                    )
                title = str(item.get("title") or upload.filename)
                files.append(File(upload.file_id, upload.filename, title, upload.content))
            thread_roots = [self._thread_root(c, args.get("thread_ts")) for c in channels]
            for channel, thread_ts in zip(channels, thread_roots, strict=True):
                message = Message(channel, self._next_ts(), initial_comment, self.bot_user_id, thread_ts, files=files)
                self._messages[(channel, message.ts)] = message
            self._bump()
        return {"files": [{"id": f.id, "name": f.name, "title": f.title, "size": len(f.content)} for f in files]}

    # -- the upload URL and response_urls ----------------------------------------------------------------------

    def _receive_upload(self, file_id: str, headers: Mapping[str, str], body: bytes) -> _Reply | None:
        content_type = headers.get("content-type", "")
        content = _multipart_file(content_type, body) if content_type.startswith("multipart/form-data") else body
        fault = self._take_fault(UPLOAD_METHOD)
        if fault is not None and fault.hang_seconds is not None:
            if self._stopping.wait(fault.hang_seconds):
                return None
            fault = None
        with self._serial:
            with self._lock:
                upload = self._uploads.get(file_id)
            args: dict[str, Any] = {
                "file_id": file_id,
                "filename": upload.filename if upload is not None else None,
                "bytes": len(content),
                "png": content.startswith(PNG_SIGNATURE),
            }
            if fault is not None:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                reply = _Reply(fault.status, fault.error.encode(), "text/plain; charset=utf-8", headers)
            elif upload is None:
                reply = _Reply.of_text("not_found", status=404)
            else:
                with self._lock:
                    upload.content = content
                    self._bump()
                reply = _Reply.of_text(f"OK - {len(content)}")
            self._record(Call(UPLOAD_METHOD, args, reply.status, time.time()), {"slack": UPLOAD_METHOD, "args": args})
        return reply

    def _response(self, target: _ResponseTarget, body: bytes) -> _Reply | None:
        try:
            loaded = json.loads(body or b"null")
        except ValueError:
            loaded = None
        args: dict[str, Any] = _decode_json_args(loaded) if isinstance(loaded, dict) else {}
        fault = self._take_fault("response")
        if fault is not None and fault.hang_seconds is not None:
            if self._stopping.wait(fault.hang_seconds):
                return None
            fault = None
        with self._serial:
            if fault is not None:
                reply = _fault_reply(fault)
            elif not isinstance(loaded, dict):
                reply = _Reply.of_text("invalid_payload", status=400)
            else:
                try:
                    self._apply_response(target, args)
                    reply = _Reply.of_text("ok")
                except _ApiError as e:
                    reply = _Reply.of_text(e.error, status=400)
            call = Call("response", args, reply.status, time.time(), command=target.command, action=target.action)
            self._record(call, target.event(args))
        return reply

    def _apply_response(self, target: _ResponseTarget, args: dict[str, Any]) -> None:
        with self._lock:
            if args.get("delete_original") and target.last is not None:
                self._remove(target.last)
                target.last = None
                self._bump()
                return
            text, blocks, attachments = _content(args)
            if args.get("replace_original") and target.last is not None:
                self._edit(target.last, text, blocks, attachments)
                return
            ephemeral = args.get("response_type", "ephemeral") != "in_channel"
            message = Message(
                target.channel,
                self._next_ts(),
                text,
                self.bot_user_id,
                blocks=blocks,
                attachments=attachments,
                ephemeral_user=target.user if ephemeral else None,
            )
            if ephemeral:
                self._ephemerals.append(message)
            else:
                self._messages[(message.channel, message.ts)] = message
            target.last = message
            self._bump()

    # -- channel state (callers hold the lock) -----------------------------------------------------------------

    def _thread_root(self, channel: str, thread_ts: Any) -> str | None:
        if not thread_ts:
            return None
        parent = self._messages.get((channel, str(thread_ts)))
        # Strict where Slack is lenient: a reply to a message that was never posted is a bug worth seeing locally.
        if parent is None:
            raise _ApiError("thread_not_found")
        # Slack files a reply to a reply under the thread's parent.
        return parent.thread_ts or parent.ts

    def _edit(
        self,
        message: Message,
        text: Any,
        blocks: list[dict[str, Any]] | None,
        attachments: list[dict[str, Any]] | None,
    ) -> None:
        message.edits.append(replace(copy.deepcopy(message), edits=[]))
        if text is not None:
            message.text = str(text)
        if blocks is not None:
            message.blocks = blocks
        if attachments is not None:
            message.attachments = attachments
        self._bump()

    def _remove(self, message: Message) -> None:
        if message.ephemeral_user is not None:
            self._ephemerals = [m for m in self._ephemerals if m is not message]
        else:
            self._messages.pop((message.channel, message.ts), None)

    def _wire(self, message: Message) -> dict[str, Any]:
        """The message object Slack returns from chat.postMessage and chat.update."""
        wire: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": message.text,
            "user": message.user,
            "bot_id": self.bot_id,
            "team": self.team_id,
            "ts": message.ts,
        }
        if message.thread_ts:
            wire["thread_ts"] = message.thread_ts
        if message.blocks:
            wire["blocks"] = message.blocks
        if message.attachments:
            wire["attachments"] = message.attachments
        if message.edits:
            wire["edited"] = {"user": message.user, "ts": message.edits[-1].ts}
        return wire


# -- the HTTP server -------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A request held by a hang must not keep stop() waiting.
    block_on_close = False

    def __init__(self, address: tuple[str, int], standin: SlackStandIn) -> None:
        super().__init__(address, _Handler)
        self.standin = standin


class _Handler(BaseHTTPRequestHandler):
    server_version = "SlackStandIn/1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        standin = cast(_Server, self.server).standin
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = standin._handle(method, self.path, headers, body)
        except Exception:
            logger.exception("Slack stand-in failed on %s %s", method, self.path)
            reply = _Reply.of_json({"ok": False, "error": "fatal_error"}, status=500)
        if reply is None:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout during a hang); Slack too may have acted on a request nobody heard back from.
            logger.debug("client left before the answer to %s %s", method, self.path)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


# -- request parsing ---------------------------------------------------------------------------------------------


def _parse_args(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    """The call's arguments from the query string and a form, multipart or JSON body."""
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    kind = content_type.split(";", 1)[0].strip().lower()
    if body and kind == "application/json":
        try:
            loaded = json.loads(body)
        except ValueError:
            raise _ApiError("invalid_json") from None
        if not isinstance(loaded, dict):
            raise _ApiError("invalid_json")
        args.update(loaded)
    elif body and kind == "multipart/form-data":
        for name, _, value in _multipart_parts(content_type, body):
            args[name] = value.decode("utf-8", errors="replace")
    elif body:
        try:
            args.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            raise _ApiError("invalid_form_data") from None
    return _decode_json_args(args)


def _decode_json_args(args: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_ARGS:
        value = args.get(key)
        if isinstance(value, str):
            # Left as sent when it is not JSON: the method reports it if it needs the field.
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return args


def _multipart_parts(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    envelope = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    message = cast(EmailMessage, BytesParser(policy=HTTP).parsebytes(envelope))
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts.append((name, part.get_filename(), payload))
    return parts


def _multipart_file(content_type: str, body: bytes) -> bytes:
    """The file in a multipart upload: the part with a filename, else the one named "file"."""
    parts = _multipart_parts(content_type, body)
    for _, filename, payload in parts:
        if filename is not None:
            return payload
    return next((payload for name, _, payload in parts if name == "file"), b"")


def _bearer(authorization: str) -> str | None:
    scheme, _, credentials = authorization.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _channel(value: Any) -> str:
    if not value or not isinstance(value, str):
        raise _ApiError("channel_not_found")
    return value


def _blocks(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _ApiError("invalid_blocks_format")
    if not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in value):
        raise _ApiError("invalid_blocks")
    return value


def _attachments(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
        raise _ApiError("invalid_attachments")
    return value


def _content(args: dict[str, Any]) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """A new message's text, blocks and attachments; Slack needs at least one of them."""
    text = str(args.get("text") or "")
    blocks = _blocks(args["blocks"]) if args.get("blocks") is not None else []
    attachments = _attachments(args["attachments"]) if args.get("attachments") is not None else []
    if not (text or blocks or attachments):
        raise _ApiError("no_text")
    return text, blocks, attachments


def _share_channels(args: dict[str, Any]) -> list[str]:
    """Where files.completeUploadExternal shares the files: channel_id, else `channels`; none keeps them private."""
    if args.get("channel_id"):
        return [_channel(args["channel_id"])]
    channels = args.get("channels") or []
    if isinstance(channels, str):
        channels = [c.strip() for c in channels.split(",") if c.strip()]
    if args.get("thread_ts") and not channels:
        raise _ApiError("invalid_arguments", "thread_ts needs channel_id")
    return [_channel(c) for c in channels]


def _fault_reply(fault: _Fault) -> _Reply:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    return _Reply.of_json({"ok": False, "error": fault.error}, status=fault.status, headers=headers)


def _snake(phrase: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


# -- rendering ---------------------------------------------------------------------------------------------------

_SLACK_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def _mrkdwn(text: str) -> str:
    """Slack's markup made readable in a terminal: <url|label> → label (url), <@U1> → @U1, entities unescaped."""

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("@", "!")):  # <@U123>, <!here>
            return "@" + (label or target[1:])
        if target.startswith("#"):  # <#C123|general>
            return "#" + (label or target[1:])
        return f"{label} ({target})" if label else target

    return html.unescape(_SLACK_LINK.sub(link, text))


def _text(obj: Any) -> str:
    """The text of a text object (plain_text or mrkdwn) or a bare string; empty for anything else."""
    if isinstance(obj, str):
        return _mrkdwn(obj)
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return _mrkdwn(obj["text"])
    return ""


def _element(element: dict[str, Any]) -> str:
    kind = element.get("type")
    if kind == "button":
        label = _text(element.get("text"))
        return f"[{label}]({element['url']})" if element.get("url") else f"[{label}]"
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind in ("plain_text", "mrkdwn"):
        return _text(element)
    return f"[{_text(element.get('placeholder')) or kind}]"


def _rich_text(element: dict[str, Any]) -> str:
    kind = element.get("type")
    if kind == "text":
        return str(element.get("text", ""))
    if kind == "link":
        url = str(element.get("url", ""))
        return f"{element['text']} ({url})" if element.get("text") else url
    if kind == "user":
        return f"@{element.get('user_id', '')}"
    if kind == "emoji":
        return f":{element.get('name', '')}:"
    return "".join(_rich_text(e) for e in element.get("elements", []) if isinstance(e, dict))


def _render_blocks(blocks: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"# {_text(block.get('text'))}")
        elif kind == "section":
            text = _text(block.get("text"))
            accessory = block.get("accessory")
            if isinstance(accessory, dict):
                text = f"{text}  {_element(accessory)}".strip()
            if text:
                lines += text.splitlines()
            lines += [f"  {_text(f).replace(chr(10), ' ')}" for f in block.get("fields", [])]
        elif kind == "context":
            lines.append(" | ".join(_element(e) for e in block.get("elements", [])))
        elif kind == "actions":
            lines.append("  ".join(_element(e) for e in block.get("elements", [])))
        elif kind == "divider":
            lines.append("---")
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}] {block.get('image_url', '')}".rstrip())
        elif kind == "rich_text":
            lines += _rich_text(block).splitlines()
        else:
            lines.append(f"[{kind}]")
    return lines


def _render_attachment(attachment: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for key in ("pretext", "title", "text"):
        if attachment.get(key):
            lines += _mrkdwn(str(attachment[key])).splitlines()
    if attachment.get("title_link"):
        lines.append(str(attachment["title_link"]))
    lines += [f"{f.get('title', '')}: {_mrkdwn(str(f.get('value', '')))}" for f in attachment.get("fields", [])]
    lines += _render_blocks(attachment.get("blocks", []))
    return lines
