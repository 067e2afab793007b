"""A local stand-in for `lambda:InvokeFunction`: runs the named in-process handler, async in a thread.

bolt's Lambda adapter re-invokes its own function for lazy listeners; moto cannot run Lambda code
without Docker, so the local stack hands bolt this client instead.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class LambdaContext:
    """The attributes of the Lambda context object that bolt and powertools read."""

    function_name: str
    invoked_function_arn: str = ""
    aws_request_id: str = "local"
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
            object.__setattr__(self, "invoked_function_arn", arn)

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@dataclass
class LocalLambdaClient:
    """Answers `invoke(FunctionName, InvocationType, Payload)` by calling a registered handler."""

    handlers: dict[str, Handler]
    on_error: Callable[[str, BaseException], None] | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    def invoke(
        self, FunctionName: str, InvocationType: str = "RequestResponse", Payload: Any = b"{}", **_: Any
    ) -> dict[str, Any]:
        name = FunctionName.rsplit(":", 1)[-1]
        handler = self.handlers[name]
        event = json.loads(Payload) if isinstance(Payload, (str, bytes, bytearray)) else Payload
        context = LambdaContext(function_name=name)
        if InvocationType == "Event":
            t = threading.Thread(target=self._run, args=(name, handler, event, context), daemon=True)
            self._threads.append(t)
            t.start()
            return {"StatusCode": 202}
        return {"StatusCode": 200, "Payload": json.dumps(handler(event, context)).encode()}

    def _run(self, name: str, handler: Handler, event: dict[str, Any], context: LambdaContext) -> None:
        try:
            handler(event, context)
        except BaseException as e:  # an async invocation's failure is reported, never raised into bolt
            if self.on_error:
                self.on_error(name, e)

    def join(self, timeout: float = 30.0) -> None:
        """Wait for async invocations started so far (tests and shutdown)."""
        for t in list(self._threads):
            t.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]
