"""Delivers what the bus routes to each function's queue to that function's in-process handler.

Like EventBridge with a Lambda target: events are handled concurrently, a handler that raises gets
the event again RETRY_SECONDS later, and after MAX_RECEIVES tries it is dropped and reported, as a
dead-letter queue would keep it. The queue's visibility timeout stands in for the function's timeout:
a handler still running is not handed the same event twice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3

from infra.local.invoke import Handler, LambdaContext

MAX_RECEIVES = 5
RETRY_SECONDS = 2
POLL_SECONDS = 1
CONCURRENCY = 4

Emit = Callable[[dict[str, Any]], None]


class Dispatcher:
    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pools: list[ThreadPoolExecutor] = []
        self._sqs: Any = boto3.client("sqs")
        self._inflight = 0
        self._lock = threading.Lock()
        self._queues: list[str] = []

    def route(self, function_name: str, queue_url: str, handler: Handler) -> None:
        pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix=f"lambda-{function_name}")
        self._pools.append(pool)
        self._queues.append(queue_url)
        t = threading.Thread(target=self._poll, args=(function_name, queue_url, handler, pool), daemon=True)
        self._threads.append(t)
        t.start()

    def idle(self) -> bool:
        """Nothing is being handled and nothing waits in a queue: an event a handler published is in its
        queue before the handler returns, and a message being received is counted as not visible."""
        with self._lock:
            if self._inflight:
                return False
        for queue in self._queues:
            attrs = self._sqs.get_queue_attributes(
                QueueUrl=queue,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )["Attributes"]
            if any(int(v) for v in attrs.values()):
                return False
        return True

    def _poll(self, name: str, queue: str, handler: Handler, pool: ThreadPoolExecutor) -> None:
        while not self._stop.is_set():
            try:
                resp = self._sqs.receive_message(
                    QueueUrl=queue,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=POLL_SECONDS,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except Exception as e:  # the stack is shutting down or moto hiccuped: keep polling until stopped
                if self._stop.is_set():
                    return
                self._emit({"aws": "dispatcher error", "function": name, "error": str(e)})
                self._stop.wait(POLL_SECONDS)
                continue
            for msg in resp.get("Messages", []):
                with self._lock:
                    self._inflight += 1
                pool.submit(self._deliver, name, queue, handler, msg)

    def _deliver(self, name: str, queue: str, handler: Handler, msg: dict[str, Any]) -> None:
        try:
            event = json.loads(msg["Body"])
            receives = int(msg.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            detail = event.get("detail") or {}
            delivered = {
                "aws": "event delivered",
                "function": name,
                "detail-type": event.get("detail-type"),
                "source": event.get("source"),
                "job": detail.get("job_id"),
                "try": receives,
            }
            # Which attempt said it and how far it was: what a reader of the stream needs to follow a resume.
            delivered.update({k: detail[k] for k in ("attempt", "current", "instance-id", "state") if k in detail})
            self._emit(delivered)
            try:
                handler(event, LambdaContext(function_name=name))
            except Exception as e:
                if receives >= MAX_RECEIVES:
                    self._emit(
                        {
                            "aws": "event dropped",
                            "function": name,
                            "detail-type": event.get("detail-type"),
                            "error": f"{type(e).__name__}: {e}",
                        }
                    )
                    self._sqs.delete_message(QueueUrl=queue, ReceiptHandle=msg["ReceiptHandle"])
                else:
                    self._emit(
                        {
                            "aws": "handler failed",
                            "function": name,
                            "detail-type": event.get("detail-type"),
                            "error": f"{type(e).__name__}: {e}",
                            "retry": True,
                        }
                    )
                    # Lambda retries a failed asynchronous invocation after a short wait, not after the queue's
                    # visibility timeout (which only stands in for the function's timeout).
                    self._sqs.change_message_visibility(
                        QueueUrl=queue, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=RETRY_SECONDS
                    )
                return
            self._sqs.delete_message(QueueUrl=queue, ReceiptHandle=msg["ReceiptHandle"])
        finally:
            with self._lock:
                self._inflight -= 1

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(POLL_SECONDS + 5)
        for p in self._pools:
            p.shutdown(wait=True, cancel_futures=True)  # deliveries under way finish while AWS is still up
