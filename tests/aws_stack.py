"""The AWS deployment in-process: chat's and the runner's real Lambda handlers over the DynamoDB
table (moto), the runner at reserved concurrency 1 in the Lambda stand-in, Ollama faked.

Requests go in as API Gateway (HTTP API) events through chat's handler, as on AWS; each chat
invocation may get its own container (chat has no concurrency limit), the runner never more
than one at a time. Used by tests/queue/test_queue_on_lambda.py and by the bench.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from chat.app import create_app as create_chat_app
from chat.lambda_queue import POLL_S, LambdaQueue
from chat.lambda_transport import LambdaInvokeTransport
from chat.settings import Settings as ChatSettings
from moto import mock_aws
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings
from servicekit.jobs.dynamo_store import DynamoJobStore
from servicekit.lambda_adapter import lambda_handler
from servicekit.lambda_event import http_api_event, response_parts
from servicekit.queue.drain_lease import DrainLease
from servicekit.queue.dynamo_store import DynamoQueueStore
from servicekit.state.factory import StateSettings

from tests.fake_ollama import FakeOllama
from tests.jobs.stores import REGION, TABLE, create_jobs_table
from tests.lambda_standin import Handler, InProcessLambda
from tests.servers import serve_in_thread

RUNNER = "stack-RunnerFunction-XYZ"
CHAT = "stack-ChatFunction-XYZ"
MODEL = "tinyllama"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


class _RunnerItself:
    """The runner's own Lambda client (a drain's self-invoke): the stand-in it runs in."""

    def __init__(self) -> None:
        self.runner: InProcessLambda | None = None

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> Any:
        assert self.runner is not None
        return self.runner.invoke(FunctionName=FunctionName, InvocationType=InvocationType, Payload=Payload)


@dataclass
class AwsStack:
    table: Any
    runner: InProcessLambda
    chat: InProcessLambda
    queue: DynamoQueueStore
    jobs: DynamoJobStore

    def call(self, method: str, path: str, body: Any = None, *, caller_ip: str = "203.0.113.1") -> Reply:
        """One request through API Gateway to chat's handler (blocking: run it in a thread)."""
        raw = json.dumps(body).encode() if body is not None else b""
        event = http_api_event(
            method, path, headers={"content-type": "application/json"}, body=raw, source_ip=caller_ip
        )
        result = self.chat.invoke(
            FunctionName=CHAT, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        status, headers, content = response_parts(json.loads(result["Payload"].read()))
        return Reply(status, {k.lower(): v for k, v in headers.items()}, json.loads(content) if content else None)


@contextmanager
def aws_stack(
    fake: FakeOllama,
    *,
    time_scale: float = 0.01,
    chat_deadline_s: float = 27.0,
    drain_lease_s: float = 10.0,
    retry_attempts: int = 2,
    before: bool = False,
    job_progress_interval_s: float = 0.05,
    runner_timeout_s: float = 900,
) -> Iterator[AwsStack]:
    """The stack; Lambda's async retry delays multiplied by ``time_scale`` (1 s becomes 10 ms).

    ``before``: the design before the queue on AWS, kept for the bench's comparison: chat retries
    a throttled invoke with full-jitter backoff, a job is one asynchronous invoke that Lambda
    retries while the runner is busy, and each runner invocation has a queue of its own.
    """
    with mock_aws(), serve_in_thread(fake.app) as ollama_url, tempfile.TemporaryDirectory() as tmp:
        resource = boto3.resource(
            "dynamodb", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        table = create_jobs_table(resource)
        itself = _RunnerItself()
        containers = iter(range(1_000_000))

        def runner_handler() -> Handler:
            # Each container has its own /tmp (its host lock and settle mark).
            directory = Path(tmp) / f"runner-{next(containers)}"
            settings = RunnerSettings(
                ollama_url=ollama_url,
                state=StateSettings(directory=str(directory)),
                lock_path=str(directory / "runner.lock"),
                function_name=RUNNER,
                job_progress_interval_s=job_progress_interval_s,
                job_lease_s=max(2.0, 4 * job_progress_interval_s),
            )
            if before:
                return lambda_handler(create_runner_app(settings, job_store=DynamoJobStore(table)))
            app = create_runner_app(
                settings,
                job_store=DynamoJobStore(table),
                queue_store=DynamoQueueStore(table, limits=settings.queue_limits),
                drain_lease=DrainLease(table, lease_s=drain_lease_s),
                self_invoker=itself,
            )
            return lambda_handler(app)

        runner = InProcessLambda(
            runner_handler(),
            RUNNER,
            runner_timeout_s,
            reserved_concurrency=1,
            new_handler=runner_handler,
            time_scale=time_scale,
            retry_attempts=retry_attempts,
        )
        itself.runner = runner

        def chat_handler() -> Handler:
            if before:
                settings = ChatSettings(
                    runner_function=RUNNER,
                    auth="off",
                    chat_deadline_s=chat_deadline_s,
                    state=StateSettings(directory=tmp),
                )
                transport = LambdaInvokeTransport(runner, RUNNER, default_deadline_s=chat_deadline_s)
                app = create_chat_app(settings, runner_transport=transport, job_store=DynamoJobStore(table))
                return lambda_handler(app)
            settings = ChatSettings(
                runner_function=RUNNER,
                auth="off",
                chat_deadline_s=chat_deadline_s,
                state=StateSettings(table=TABLE, directory=tmp),
            )
            queue = LambdaQueue(
                DynamoQueueStore(table, limits=settings.queue_limits),
                DrainLease(table, lease_s=drain_lease_s),
                poll_s=POLL_S,
            )
            transport = LambdaInvokeTransport(runner, RUNNER, default_deadline_s=chat_deadline_s, queue=queue)
            app = create_chat_app(
                settings, runner_transport=transport, job_store=DynamoJobStore(table), lambda_queue=queue
            )
            return lambda_handler(app)

        chat = InProcessLambda(chat_handler(), CHAT, timeout_s=29, reserved_concurrency=1000, new_handler=chat_handler)
        stack = AwsStack(
            table, runner, chat, DynamoQueueStore(table, limits=RunnerSettings().queue_limits), DynamoJobStore(table)
        )
        try:
            yield stack
        finally:
            runner.close()
            chat.close()
