"""The fair queue on AWS, in-process: chat's real handler on API Gateway events, the runner's real
handler at reserved concurrency 1 in the Lambda stand-in (throttles, Lambda's async retry
schedule in compressed time, invocations that die), the queue and jobs in DynamoDB (moto)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.aws_stack import AwsStack, Reply, aws_stack
from tests.fake_ollama import FakeOllama
from tests.waiting import eventually


@pytest.fixture
def aws(fake: FakeOllama) -> Iterator[AwsStack]:
    with aws_stack(fake) as stack:
        yield stack


async def test_a_chat_runs_at_once_when_the_runner_is_free(aws: AwsStack, fake: FakeOllama) -> None:
    reply = await asyncio.to_thread(aws.call, "POST", "/chat", {"prompt": "over the queue"})
    assert reply.status == 200, reply.body
    assert reply.body["response"] == "over the queue "
    assert reply.headers["x-queue-position"] == "0"
    assert float(reply.headers["x-queue-wait-ms"]) >= 0
    assert (await aws.queue.snapshot(now=0)).waiting == ()
    assert fake.recorder.prompts == ["over the queue"]


async def chat(aws: AwsStack, prompt: str, caller_ip: str) -> Reply:
    return await asyncio.to_thread(aws.call, "POST", "/chat", {"prompt": prompt}, caller_ip=caller_ip)


async def queued(aws: AwsStack, count: int) -> None:
    async def enough() -> bool:
        return len((await aws.queue.snapshot(now=time.time())).waiting) >= count

    await eventually(enough, what=f"{count} tickets queued")


async def test_two_callers_are_served_in_fair_order_with_their_positions(aws: AwsStack, fake: FakeOllama) -> None:
    # a0 generates slowly (1 s a token) until everyone has joined behind it, so that b0's place is
    # taken while a0 runs, however slow the machine; then every token takes 0.1 s.
    fake.faults.token_delay_s = 1.0
    first = asyncio.create_task(
        asyncio.to_thread(aws.call, "POST", "/chat", {"prompt": "a0"}, caller_ip="198.51.100.1")
    )
    await eventually(lambda: fake.recorder.active == 1, what="a0 generating")
    heavy = [
        asyncio.create_task(asyncio.to_thread(aws.call, "POST", "/chat", {"prompt": f"a{i}"}, caller_ip="198.51.100.1"))
        for i in (1, 2, 3)
    ]
    await queued(aws, 3)
    light = asyncio.create_task(
        asyncio.to_thread(aws.call, "POST", "/chat", {"prompt": "b0"}, caller_ip="198.51.100.2")
    )
    await queued(aws, 4)
    # Everyone joined while a0 ran.
    assert fake.recorder.active == 1
    assert fake.recorder.prompts == ["a0"]
    fake.faults.token_delay_s = 0.1
    replies = await asyncio.gather(first, *heavy, light)
    assert [r.status for r in replies] == [200] * 5
    # b0 came last, yet runs next: a0 was A's turn this round (the README's worked example).
    assert fake.recorder.prompts[:2] == ["a0", "b0"]
    assert sorted(fake.recorder.prompts[2:]) == ["a1", "a2", "a3"]
    positions = {r.body["response"].split()[0]: int(r.headers["x-queue-position"]) for r in replies}
    assert positions["a0"] == 0
    assert positions["b0"] == 1
    assert sorted(positions[a] for a in ("a1", "a2", "a3")) == [1, 2, 3]  # each where it joined
    waits = {r.body["response"].split()[0]: float(r.headers["x-queue-wait-ms"]) for r in replies}
    assert waits["a3"] > waits["b0"] > 0
    assert fake.recorder.peak == 1


async def test_past_the_deadline_the_answer_is_503_with_the_real_position_and_retry_after(fake: FakeOllama) -> None:
    fake.faults.token_delay_s = 1.0
    fake.faults.tokens = 5  # 5 s: longer than the next chat's 3 s deadline
    with aws_stack(fake, chat_deadline_s=3.0) as aws:
        first = asyncio.create_task(asyncio.to_thread(aws.call, "POST", "/chat", {"prompt": "long one"}))
        await eventually(lambda: fake.recorder.active == 1, what="the first generating")
        reply = await asyncio.to_thread(aws.call, "POST", "/chat", {"prompt": "too late"}, caller_ip="198.51.100.9")
        assert reply.status == 503
        error = reply.body["error"]
        assert error["code"] == "queue_timeout"
        assert error["queue_position"] == 1
        # The running one is expected to take GENERATION_ESTIMATE_S (5 s, none measured yet), about 2 s of it gone.
        assert 2 <= error["retry_after_s"] <= 4
        assert reply.headers["retry-after"] == str(error["retry_after_s"])
        assert (await aws.queue.snapshot(now=time.time())).waiting == ()  # its ticket is gone
        fake.faults.token_delay_s = 0.0
        await first
    assert "too late" not in fake.recorder.prompts


async def test_jobs_are_drained_back_to_back_by_one_invocation(aws: AwsStack, fake: FakeOllama) -> None:
    fake.faults.token_delay_s = 0.02
    ids = []
    for index in range(6):
        created = await asyncio.to_thread(aws.call, "POST", "/v1/jobs", {"prompt": f"job {index}"})
        assert created.status == 202
        ids.append(created.body["id"])
    for job_id in ids:
        await eventually_status(aws, job_id, "succeeded")
    assert fake.recorder.prompts == [f"job {i}" for i in range(6)]  # one caller: first in, first out
    assert fake.recorder.peak == 1
    ran = [a for a in aws.runner.attempts if a.outcome == "ok"]
    # Kicks go out only while no drain holds the lease: a few at most (the first, and any that raced it).
    assert len([a for a in aws.runner.invocations if a["rawPath"].endswith("/run")]) < len(ids)
    assert ran, "a drain ran"
    assert aws.runner.expired_events == []


async def eventually_status(aws: AwsStack, job_id: str, status: str, timeout_s: float = 10.0) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        seen.update((await asyncio.to_thread(aws.call, "GET", f"/v1/jobs/{job_id}")).body)
        return bool(seen["status"] == status)

    await eventually(reached, timeout_s=timeout_s, what=f"job {job_id} {status}")
    return seen


async def test_a_queued_job_reports_its_exact_position(aws: AwsStack, fake: FakeOllama) -> None:
    fake.faults.token_delay_s = 0.2
    first = (await asyncio.to_thread(aws.call, "POST", "/v1/jobs", {"prompt": "first"})).body["id"]
    await eventually_status(aws, first, "running")
    second = (await asyncio.to_thread(aws.call, "POST", "/v1/jobs", {"prompt": "second"})).body["id"]
    third = (await asyncio.to_thread(aws.call, "POST", "/v1/jobs", {"prompt": "third"})).body["id"]
    job = (await asyncio.to_thread(aws.call, "GET", f"/v1/jobs/{third}")).body
    assert (job["status"], job["queue_position"]) == ("queued", 2)
    await eventually_status(aws, second, "succeeded")
    await eventually_status(aws, third, "succeeded")


async def test_late_and_duplicate_kicks_are_no_ops(aws: AwsStack, fake: FakeOllama) -> None:
    job_id = (await asyncio.to_thread(aws.call, "POST", "/v1/jobs", {"prompt": "once"})).body["id"]
    await eventually_status(aws, job_id, "succeeded")
    kick = next(e for e in aws.runner.invocations if e["rawPath"] == f"/v1/jobs/{job_id}/run")
    for _ in range(2):  # Lambda delivers it again, late
        aws.runner.invoke(FunctionName="runner", InvocationType="Event", Payload=json.dumps(kick).encode())
    await eventually(lambda: len([a for a in aws.runner.attempts if a.ended]) >= 3, what="the kicks ran")
    assert fake.recorder.prompts == ["once"]
    assert (await eventually_status(aws, job_id, "succeeded"))["response"] == "once once once "


async def test_a_runner_invocation_that_dies_mid_job_loses_that_job_only(fake: FakeOllama) -> None:
    fake.faults.token_delay_s = 0.2
    fake.faults.tokens = 50  # 10 s: it will not finish
    with aws_stack(fake, drain_lease_s=1.0) as aws:
        doomed = (await asyncio.to_thread(aws.call, "POST", "/v1/jobs", {"prompt": "doomed"})).body["id"]
        await eventually_status(aws, doomed, "running")
        after = (await asyncio.to_thread(aws.call, "POST", "/v1/jobs", {"prompt": "next one"})).body["id"]
        aws.runner.kill()  # the invocation stops dead: no cleanup of its own
        fake.faults.tokens = 3
        # Lambda retries the failed event (1 minute later, compressed): that drain fails the
        # orphaned job and runs the next.
        job = await eventually_status(aws, doomed, "failed")
        assert job["error"]["code"] == "runner_lost"
        await eventually_status(aws, after, "succeeded")
    assert any(a.outcome == "killed" for a in aws.runner.attempts)


async def test_a_chat_goes_between_jobs_and_its_invocation_hands_the_rest_to_a_drain(
    aws: AwsStack, fake: FakeOllama
) -> None:
    fake.faults.token_delay_s = 0.15
    first = (await asyncio.to_thread(aws.call, "POST", "/v1/jobs", {"prompt": "job first"})).body["id"]
    await eventually_status(aws, first, "running")
    second = (await asyncio.to_thread(aws.call, "POST", "/v1/jobs", {"prompt": "job second"})).body["id"]
    reply = await chat(aws, "chat between", "198.51.100.7")  # waits for the drain to return to it
    assert reply.status == 200
    assert reply.headers["x-queue-position"] == "1"  # interactive: ahead of the queued job
    await eventually_status(aws, second, "succeeded")
    assert fake.recorder.prompts == ["job first", "chat between", "job second"]
    assert fake.recorder.peak == 1
    # The second job was not left waiting for a new POST: a drain ran it (kicked after the chat).
    assert [a.path for a in aws.runner.attempts if a.kind == "async"][-1] == "/v1/queue/drain"


async def test_a_drain_short_of_time_hands_over_to_a_new_invocation(fake: FakeOllama) -> None:
    # A function timeout just over the drain's reserve (60 s, plus Lambda's 1 s margin): each
    # invocation runs one job, then is short of time and hands the queue over by invoking itself.
    with aws_stack(fake, runner_timeout_s=61.3) as aws:
        fake.faults.token_delay_s = 0.1
        ids = [
            (await asyncio.to_thread(aws.call, "POST", "/v1/jobs", {"prompt": f"job {i}"})).body["id"] for i in range(3)
        ]
        for job_id in ids:
            await eventually_status(aws, job_id, "succeeded")
        handovers = [e for e in aws.runner.invocations if e["rawPath"] == "/v1/queue/drain"]
    assert fake.recorder.prompts == ["job 0", "job 1", "job 2"]
    assert len(handovers) == 2  # after the first and the second job; the third found nothing left
