"""An IMDSv2 stand-in for one local instance: session tokens, the metadata paths the agent reads, and
spot/rebalance notices the local stack can announce.

It also takes the host's power requests (`POST /_local/power`) from the `shutdown` stand-in on the
instance's PATH; that path is not part of IMDS and nothing but the local shutdown shim uses it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN_MAX_TTL = 21600


class Imds:
    def __init__(
        self,
        *,
        instance_id: str,
        instance_type: str,
        availability_zone: str,
        user_data: str,
        tags: dict[str, str],
        on_power: Callable[[list[str]], None],
    ) -> None:
        self.meta: dict[str, str] = {
            "instance-id": instance_id,
            "instance-type": instance_type,
            "placement/availability-zone": availability_zone,
            "placement/region": availability_zone[:-1],
            "ami-id": "ami-local",
            "hostname": f"ip-10-0-0-1.{availability_zone[:-1]}.compute.internal",
            "local-ipv4": "10.0.0.1",
        }
        self.user_data = user_data
        self.tags = tags
        self.spot_action: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None
        self._tokens: dict[str, float] = {}
        self._on_power = on_power
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Imds:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def announce_interruption(self, action: str = "terminate", seconds: float = 120) -> None:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
        with self._lock:
            self.spot_action = {"action": action, "time": when}

    def _lookup(self, path: str) -> str | None:
        if path == "/latest/user-data":
            return self.user_data
        if not path.startswith("/latest/meta-data/"):
            return None
        key = path.removeprefix("/latest/meta-data/").rstrip("/")
        if key in self.meta:
            return self.meta[key]
        if key == "spot/instance-action":
            return json.dumps(self.spot_action) if self.spot_action else None
        if key == "events/recommendations/rebalance":
            return json.dumps(self.rebalance) if self.rebalance else None
        if key == "tags/instance":
            return "\n".join(sorted(self.tags))
        if key.startswith("tags/instance/"):
            return self.tags.get(key.removeprefix("tags/instance/"))
        if key == "":
            return "\n".join(sorted({k.split("/")[0] for k in self.meta} | {"spot", "tags"}))
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str = "") -> None:
                data = body.encode()
                # A client that stopped waiting (its timeout is short, as on EC2) has nothing left to hear.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def do_PUT(self) -> None:
                if self.path != "/latest/api/token":
                    return self._send(404)
                try:
                    ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
                except ValueError:
                    return self._send(400)
                if not 1 <= ttl <= TOKEN_MAX_TTL:
                    return self._send(400)
                token = secrets.token_urlsafe(32)
                with imds._lock:
                    imds._tokens[token] = time.time() + ttl
                self._send(200, token)

            def do_GET(self) -> None:
                token = self.headers.get("X-aws-ec2-metadata-token", "")
                with imds._lock:
                    valid = imds._tokens.get(token, 0) > time.time()
                if not valid:  # IMDSv2 required: no token, no metadata
                    return self._send(401)
                value = imds._lookup(self.path)
                self._send(200, value) if value is not None else self._send(404)

            def do_POST(self) -> None:
                if self.path != "/_local/power":
                    return self._send(404)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0)).decode()
                imds._on_power(json.loads(body))
                self._send(200, "ok")

        return Handler
