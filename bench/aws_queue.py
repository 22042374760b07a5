"""AWS, simulated in-process: the queue on DynamoDB (moto) against the design before it.

Both run chat's and the runner's real Lambda handlers (tests/aws_stack.py): the runner at
reserved concurrency 1 in the Lambda stand-in, which throttles a second synchronous invoke and
retries throttled asynchronous events on Lambda's documented schedule (1 s after the first
attempt, doubling, at most 5 minutes; here in real time). Ollama is the fake, each generation
taking ``generation_s``.

- jobs: ``jobs`` posted together; GPU busy share of the span (first POST to last generation's
  end), the idle gaps between generations, how many expired.
- chats: ``chats`` synchronous /chat requests from as many callers, arriving together (``STAGGER_S``
  apart, so their order of arrival is known); whether they were served in that order (the
  fair order: one turn each), the gaps, how many were answered 503.
- the cost: DynamoDB requests (reads, writes) and runner invocations per generation.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.aws_stack import AwsStack, aws_stack
from tests.fake_ollama import FakeOllama, Recorder
from tests.waiting import until

READS = {"GetItem", "BatchGetItem", "Query", "Scan"}
TOKENS = 10
STAGGER_S = 0.02
# The runner's default (JOB_PROGRESS_INTERVAL_S): a running job writes its progress this often.
PROGRESS_S = 0.5


@dataclass
class Outcome:
    design: str  # "queue" or "before"
    scenario: str  # "jobs" or "chats"
    generations: int
    busy_pct: float
    gap_p50_ms: float
    gap_max_ms: float
    expired: int  # jobs that did not succeed (expired unrun: Lambda dropped their event)
    refused: int  # chats answered 503
    fair: bool | None  # chats served in the order they arrived, one turn per caller (None: jobs)
    reads_per_generation: float
    writes_per_generation: float
    invocations_per_generation: float  # runner invocations that ran (throttled attempts not counted)
    throttles_per_generation: float
    span_s: float


class _Calls:
    """DynamoDB requests, counted by operation, from botocore's own events."""

    def __init__(self, stack: AwsStack) -> None:
        self.counts: Counter[str] = Counter()
        self.on = False
        self._guard = threading.Lock()
        stack.table.meta.client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        if self.on:
            with self._guard:
                self.counts[model.name] += 1

    def reads(self) -> int:
        return sum(n for op, n in self.counts.items() if op in READS)

    def writes(self) -> int:
        return sum(n for op, n in self.counts.items() if op not in READS)


def _warm(stack: AwsStack, fake: FakeOllama, containers: int) -> None:
    """Warm containers, as a steady stream keeps them: ``containers`` chats at once (each waiting one
    holds a chat container; the runner's starts too), then forget them."""
    with ThreadPoolExecutor(max_workers=containers) as pool:
        list(
            pool.map(
                lambda i: stack.call("POST", "/chat", {"prompt": "warm"}, caller_ip=f"192.0.2.{i + 1}"),
                range(containers),
            )
        )
    fake.recorder = Recorder()
    stack.runner.attempts.clear()
    stack.runner.throttles = 0


@contextmanager
def _scenario(before: bool, generation_s: float) -> Iterator[tuple[FakeOllama, AwsStack, _Calls, float]]:
    """A warm stack of either design, generations of ``generation_s``, DynamoDB calls counted from now."""
    fake = FakeOllama()
    with aws_stack(fake, time_scale=1.0, before=before, job_progress_interval_s=PROGRESS_S) as stack:
        _warm(stack, fake, containers=5)
        fake.faults.tokens, fake.faults.token_delay_s = TOKENS, generation_s / TOKENS
        calls = _Calls(stack)
        calls.on = True
        yield fake, stack, calls, time.perf_counter()


def _outcome(
    design: str, scenario: str, fake: FakeOllama, stack: AwsStack, calls: _Calls, started: float, **fields: Any
) -> Outcome:
    spans = sorted(fake.recorder.spans)
    count = len(spans)
    span_s = spans[-1][1] - started
    gaps = fake.recorder.gaps_ms()
    ran = [a for a in stack.runner.attempts if a.ended]
    return Outcome(
        design=design,
        scenario=scenario,
        generations=count,
        busy_pct=100 * sum(end - start for start, end in spans) / span_s,
        gap_p50_ms=statistics.median(gaps) if gaps else 0.0,
        gap_max_ms=max(gaps, default=0.0),
        reads_per_generation=calls.reads() / count,
        writes_per_generation=calls.writes() / count,
        invocations_per_generation=len(ran) / count,
        throttles_per_generation=stack.runner.throttles / count,
        span_s=span_s,
        **fields,
    )


def jobs_together(before: bool, jobs: int = 10, generation_s: float = 1.0) -> Outcome:
    with _scenario(before, generation_s) as (fake, stack, calls, started):
        # From two callers: one may have MAX_WAITING_PER_CALLER (8) waiting.
        owners = [f"198.51.100.{i % 2 + 1}" for i in range(jobs)]
        ids = [
            stack.call("POST", "/v1/jobs", {"prompt": f"job {i}"}, caller_ip=ip).body["id"]
            for i, ip in enumerate(owners)
        ]
        # Until every job has succeeded or was given up on (Lambda drops an event 900 s old).
        until(lambda: fake.recorder.completed >= jobs or not stack.runner.pending(), timeout_s=1000, what="the run")
        calls.on = False
        statuses = [
            stack.call("GET", f"/v1/jobs/{i}", caller_ip=ip).body["status"] for i, ip in zip(ids, owners, strict=True)
        ]
        return _outcome(
            "before" if before else "queue",
            "jobs",
            fake,
            stack,
            calls,
            started,
            expired=len(ids) - statuses.count("succeeded"),
            refused=0,
            fair=None,
        )


def chats_together(before: bool, chats: int = 5, generation_s: float = 1.0) -> Outcome:
    with _scenario(before, generation_s) as (fake, stack, calls, started):

        def arrive(index: int) -> Any:
            time.sleep(index * STAGGER_S)
            return stack.call("POST", "/chat", {"prompt": f"chat{index}"}, caller_ip=f"198.51.100.{index + 1}")

        with ThreadPoolExecutor(max_workers=chats) as pool:
            replies = list(pool.map(arrive, range(chats)))
        calls.on = False
        fair = fake.recorder.prompts == [f"chat{i}" for i in range(chats)]
        return _outcome(
            "before" if before else "queue",
            "chats",
            fake,
            stack,
            calls,
            started,
            expired=0,
            refused=sum(1 for r in replies if r.status == 503),
            fair=fair,
        )


def simulate(before_jobs: bool) -> list[Outcome]:
    """Jobs and chats with the queue, chats before it; jobs before it only if asked: Lambda's retries
    spread ten 1-s jobs over ~8.5 minutes (measured: 512 s), too long for every bench run."""
    outcomes = [jobs_together(before=False), chats_together(before=False), chats_together(before=True)]
    if before_jobs:
        outcomes.append(jobs_together(before=True))
    return outcomes
