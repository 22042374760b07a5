"""``GET /readyz``: is chat able to serve? Two ways to tell, one per mode.

- Locally and under compose, ask the runner's own ``/readyz`` (it checks Ollama).
- On AWS, never invoke the runner: with reserved concurrency 1, a probe invoke would take the one
  unit from generations (and a public probe loop would throttle them all). Instead ask the Lambda
  control plane whether the runner function is deployed and active, and DynamoDB whether the
  state table is; both answers are cached for ``AWS_READY_CACHE_S`` so a probe loop costs at most
  one pair of API calls per period (``GetFunction`` is rate-limited per account).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
from servicekit.errors import NotReady, UpstreamError

from chat.errors import RunnerBusy
from chat.runner_client import RunnerClient

AWS_READY_CACHE_S = 10.0


class Readiness(Protocol):
    async def check(self, request_id: str) -> dict[str, Any]:
        """What ``/readyz`` reports under ``"runner"`` (and more); raises ``NotReady``."""
        ...


class RunnerReadiness:
    def __init__(self, runner: RunnerClient) -> None:
        self.runner = runner

    async def check(self, request_id: str) -> dict[str, Any]:
        try:
            status, body = await self.runner.ready(request_id)
        except RunnerBusy:
            return {"runner": {"busy": True}}
        except UpstreamError as exc:
            raise NotReady(f"The runner is not ready: {exc.message}") from exc
        if status != 200:
            detail = body.get("error", {}).get("message", f"status {status}") if body else f"status {status}"
            raise NotReady(f"The runner is not ready: {detail}")
        return {"runner": body}


class FunctionInfo(Protocol):
    """The boto3 Lambda client method this uses (a control-plane call: no invocation)."""

    def get_function(self, *, FunctionName: str) -> Mapping[str, Any]: ...


class TableInfo(Protocol):
    """The boto3 DynamoDB client method this uses."""

    def describe_table(self, *, TableName: str) -> Mapping[str, Any]: ...


class AwsReadiness:
    def __init__(
        self,
        function_name: str,
        table_name: str,
        *,
        connect: Callable[[], tuple[FunctionInfo, TableInfo]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``connect`` makes the two clients on the first probe (boto3 clients cost ~30 ms each to make,
        which a cold start that serves a generation first should not pay)."""
        self.function_name = function_name
        self.table_name = table_name
        self._connect = connect
        self._clients: tuple[FunctionInfo, TableInfo] | None = None
        self._clock = clock
        self._cached: tuple[float, dict[str, Any]] | None = None

    async def check(self, request_id: str) -> dict[str, Any]:
        now = self._clock()
        if self._cached is None or self._cached[0] <= now:
            self._cached = (now + AWS_READY_CACHE_S, await anyio.to_thread.run_sync(self._ask))
        return self._cached[1]

    def _ask(self) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError  # with boto3, only on AWS

        try:
            if self._clients is None:
                self._clients = self._connect()
            functions, tables = self._clients
            function = functions.get_function(FunctionName=self.function_name)
            table = tables.describe_table(TableName=self.table_name) if self.table_name else {}
        except (BotoCoreError, ClientError) as exc:
            raise NotReady(f"AWS could not be asked whether the runner is ready: {type(exc).__name__}.") from exc
        configuration = function.get("Configuration", {})
        state = configuration.get("State", "Active")  # older functions report no state
        reserved = function.get("Concurrency", {}).get("ReservedConcurrentExecutions")
        table_status = table.get("Table", {}).get("TableStatus", "ACTIVE" if not self.table_name else None)
        if state != "Active":
            raise NotReady(f"The runner function is {state}.")
        if table_status != "ACTIVE":
            raise NotReady(f"The state table is {table_status}.")
        return {"runner": {"state": state, "reserved_concurrency": reserved}, "table": {"status": table_status}}


def aws_readiness(function_name: str, table_name: str, connect_timeout_s: float) -> AwsReadiness:
    """Readiness from the control plane, with short-timeout clients of its own."""

    def connect() -> tuple[FunctionInfo, TableInfo]:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"total_max_attempts": 2, "mode": "standard"}, connect_timeout=connect_timeout_s, read_timeout=5
        )
        return boto3.client("lambda", config=config), boto3.client("dynamodb", config=config)

    return AwsReadiness(function_name, table_name, connect=connect)
