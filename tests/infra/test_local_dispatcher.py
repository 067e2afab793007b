"""The local stack's delivery from queues to in-process handlers, and when it may call itself idle."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import boto3

from infra.local.dispatcher import Dispatcher


def _wait(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


def test_a_message_waiting_in_a_queue_or_being_handled_is_not_idle(aws: str) -> None:
    sqs = boto3.client("sqs")
    first = sqs.create_queue(QueueName="first")["QueueUrl"]
    second = sqs.create_queue(QueueName="second")["QueueUrl"]
    release = threading.Event()
    seen: list[str] = []

    def relay(event: dict[str, Any], context: Any) -> None:
        # Like a handler that publishes: its event is in the next queue before it returns.
        release.wait(10)
        sqs.send_message(QueueUrl=second, MessageBody=json.dumps({"detail-type": "next", "detail": {}}))

    def keep(event: dict[str, Any], context: Any) -> None:
        seen.append(event["detail-type"])

    dispatcher = Dispatcher(emit=lambda line: None)
    try:
        # Queued before anything polls: nothing is in flight, yet the dispatcher is not idle.
        sqs.send_message(QueueUrl=first, MessageBody=json.dumps({"detail-type": "first", "detail": {}}))
        dispatcher.route("relay", first, relay)
        dispatcher.route("keep", second, keep)
        assert not dispatcher.idle()
        time.sleep(0.5)
        assert not dispatcher.idle()  # received, still being handled
        release.set()
        _wait(lambda: seen == ["next"])
        _wait(dispatcher.idle)
    finally:
        release.set()
        dispatcher.stop()


def test_an_empty_stack_is_idle(aws: str) -> None:
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="only")["QueueUrl"]
    dispatcher = Dispatcher(emit=lambda line: None)
    try:
        dispatcher.route("only", queue, lambda event, context: None)
        assert dispatcher.idle()
    finally:
        dispatcher.stop()
