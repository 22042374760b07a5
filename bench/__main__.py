"""``python -m bench``: measure the gateway against explicit targets; print a table, write bench/results/latest.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.auth import auth_check_us
from bench.aws_queue import Outcome, simulate
from bench.dialects import Overhead, litellm_overhead, medians, openai_overhead
from bench.extra import first_response_ms, import_ms, overload, peak_rss_mb, python_processes, slot_handoff_ms
from bench.measure import Latency, burst, first_byte_ms, median, sequential_ms
from bench.observe import observe_cost_multiprocess_us, observe_cost_us, queue_scrape_ms
from bench.page import measure as first_token_page_and_curl
from bench.settle import settle_after_drops
from bench.stack import stack
from bench.state_store import job_round_trip_ms

RESULTS = Path(__file__).parent / "results"
PROMPT = {"prompt": "hi"}


@dataclass
class Row:
    name: str
    value: float
    unit: str
    target: str
    met: bool | None

    def line(self) -> str:
        verdict = {True: "met", False: "MISSED", None: "-"}[self.met]
        return f"{self.name:<52} {self.value:>10.2f} {self.unit:<6} {self.target:<12} {verdict}"


async def added_latency(rounds: int, count: int) -> list[Row]:
    """chat -> runner -> fake over client -> fake, one request at a time, medians over rounds."""
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as s:
        direct_body = {"model": "tinyllama", "prompt": "hi", "stream": False}
        per_round: list[tuple[Latency, Latency, Latency, Latency, Latency]] = []
        openai_rounds: list[Overhead] = []
        async with httpx.AsyncClient(timeout=30, headers=s.headers) as client:
            await sequential_ms(client, f"{s.chat_url}/chat", PROMPT, 100)  # warm up every hop
            await sequential_ms(client, f"{s.ollama_url}/api/generate", direct_body, 100)
            await openai_overhead(client, s.ollama_url, s.chat_url, 50)
            for _ in range(rounds):
                openai_rounds.append(await openai_overhead(client, s.ollama_url, s.chat_url, count))
                direct = await sequential_ms(client, f"{s.ollama_url}/api/generate", direct_body, count)
                direct_streamed = await sequential_ms(
                    client, f"{s.ollama_url}/api/generate", {**direct_body, "stream": True}, count
                )
                chain = await sequential_ms(client, f"{s.chat_url}/chat", PROMPT, count)
                direct_fb = await first_byte_ms(
                    client, f"{s.ollama_url}/api/generate", {**direct_body, "stream": True}, count // 4
                )
                chain_fb = await first_byte_ms(client, f"{s.chat_url}/chat", {**PROMPT, "stream": True}, count // 4)
                per_round.append(
                    (
                        Latency.of(direct),
                        Latency.of(chain),
                        Latency.of(direct_fb),
                        Latency.of(chain_fb),
                        Latency.of(direct_streamed),
                    )
                )
        litellm = await litellm_overhead(s.ollama_url, rounds, count)

    def med(pick: Any) -> float:
        return median([pick(r) for r in per_round])

    added = {p: med(lambda r, p=p: getattr(r[1], p) - getattr(r[0], p)) for p in ("p50", "p95", "p99")}
    ttfb = med(lambda r: r[3].p50 - r[2].p50)
    openai = medians(openai_rounds)
    if litellm is None:
        litellm_rows = [Row("LiteLLM proxy: not installed (set LITELLM_BIN)", float("nan"), "ms", "(compare)", None)]
    else:
        litellm_rows = [
            Row("LiteLLM proxy /v1/chat/completions added p50", litellm.added_p50_ms, "ms", "(compare)", None),
            Row(
                "LiteLLM proxy streaming added first byte p50", litellm.added_first_byte_p50_ms, "ms", "(compare)", None
            ),
        ]
    return [
        Row("direct to fake Ollama p50", med(lambda r: r[0].p50), "ms", "(baseline)", None),
        Row("chat+runner added latency p50", added["p50"], "ms", "<= 1.5", added["p50"] <= 1.5),
        Row("chat+runner added latency p95", added["p95"], "ms", "<= 4", added["p95"] <= 4),
        Row("chat+runner added latency p99", added["p99"], "ms", "(report)", None),
        # The runner asks Ollama to stream even for a non-streamed reply: what that costs at Ollama itself.
        Row(
            "direct to fake Ollama p50, streamed (as the runner asks)",
            med(lambda r: r[4].p50),
            "ms",
            "(report)",
            None,
        ),
        Row(
            "chat+runner added latency p50 over a streamed direct call",
            med(lambda r: r[1].p50 - r[4].p50),
            "ms",
            "(report)",
            None,
        ),
        Row("streaming added time to first byte p50", ttfb, "ms", "<= 2", ttfb <= 2),
        Row(
            "OpenAI /v1/chat/completions added latency p50",
            openai.added_p50_ms,
            "ms",
            "<= 1.5",
            openai.added_p50_ms <= 1.5,
        ),
        Row(
            "OpenAI streaming added time to first byte p50",
            openai.added_first_byte_p50_ms,
            "ms",
            "<= 2",
            openai.added_first_byte_p50_ms <= 2,
        ),
        *litellm_rows,
    ]


async def handoff(workers: int, clients: int, per_client: int, token_delay_s: float) -> list[Row]:
    """32 clients on the runner: the idle gap the fake sees between one generation and the next."""
    target = 2.0 if workers == 1 else 5.0
    with (
        tempfile.TemporaryDirectory() as tmp,
        stack(Path(tmp), runner_workers=workers, token_delay_s=token_delay_s) as s,
    ):
        url = f"{s.runner_url}/v1/run/tinyllama"
        async with httpx.AsyncClient(timeout=30, headers=s.headers) as client:
            await burst(url, PROMPT, clients, 1, s.runner_headers)  # every worker up and warm
            await client.post(f"{s.ollama_url}/_fake/reset")
            result = await burst(url, PROMPT, clients, per_client, s.runner_headers)
            stats = (await client.get(f"{s.ollama_url}/_fake/stats")).json()
            runner_rss = max(peak_rss_mb(pid) for pid in python_processes(s.runner_pid))
            chat_rss = peak_rss_mb(s.chat_pid)
    generations = clients * per_client
    gaps = stats["gaps_ms"]
    generation_s = 3 * token_delay_s
    ideal_s = generations * generation_s
    label = f"{workers} runner process{'es' if workers > 1 else ''}"
    if stats["peak"] != 1 or result.statuses != {200: generations}:
        raise RuntimeError(f"handoff run broke the contract: peak={stats['peak']} statuses={result.statuses}")
    slot_median, slot_p95 = slot_handoff_ms(workers)
    return [
        Row(f"slot handoff median (no HTTP), {label}", slot_median, "ms", f"<= {target:g}", slot_median <= target),
        Row(f"slot handoff p95 (no HTTP), {label}", slot_p95, "ms", "(report)", None),
        Row(f"handoff gap at Ollama median, {label}", median(gaps), "ms", f"<= {target:g}", median(gaps) <= target),
        Row(f"handoff gap at Ollama p95, {label}", sorted(gaps)[int(len(gaps) * 0.95)], "ms", "(report)", None),
        Row(
            f"wall / ideal ({generations} x {generation_s * 1000:g} ms), {label}",
            result.wall_s / ideal_s,
            "x",
            "(report)",
            None,
        ),
        Row(f"peak RSS of a runner process, {label}", runner_rss, "MB", "<= 60", runner_rss <= 60),
        Row(f"peak RSS of chat, {label}", chat_rss, "MB", "<= 60", chat_rss <= 60),
    ]


async def settle(drops: int, token_delay_s: float) -> list[Row]:
    """The price of one at a time at the edges: Ollama idles about one token interval after a drop."""
    gaps, handoffs, peak = await settle_after_drops(drops, token_delay_s)
    if peak != 1:
        raise RuntimeError(f"dropped requests overlapped at Ollama: peak={peak}")
    interval = f"{token_delay_s * 1000:g} ms tokens"
    return [
        Row(f"idle at Ollama after a dropped request, median ({interval})", median(gaps), "ms", "(report)", None),
        Row(f"drop to next request at Ollama, median ({interval})", median(handoffs), "ms", "(report)", None),
        Row("peak generations at Ollama over the drops", float(peak), "", "1", peak == 1),
    ]


async def rejections(seconds: float) -> list[Row]:
    """A full queue: one generation holds the slot, MAX_QUEUE=2 are waiting, everyone else gets 503."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp), token_delay_s=5.0, max_queue=2) as s:
        async with httpx.AsyncClient(timeout=60, headers=s.headers) as client:
            holders = [asyncio.create_task(client.post(f"{s.chat_url}/chat", json=PROMPT)) for _ in range(3)]
            await asyncio.sleep(0.5)
            for name, url, headers in (
                ("runner", f"{s.runner_url}/v1/run/tinyllama", s.runner_headers),
                ("chat -> runner", f"{s.chat_url}/chat", s.headers),
            ):
                per_s, p50, statuses = await overload(url, PROMPT, clients=32, seconds=seconds, headers=headers)
                if set(statuses) != {503}:
                    raise RuntimeError(f"overload run answered {statuses}")
                rows.append(Row(f"503 rejections per second, {name}", per_s, "/s", ">= 1500", per_s >= 1500))
                rows.append(Row(f"503 latency p50 under overload, {name}", p50, "ms", "(report)", None))
            for task in holders:
                task.cancel()
            await asyncio.gather(*holders, return_exceptions=True)
    return rows


def cold_start() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for module in ("chat.handler", "runner.handler"):
            ms = import_ms(module, extra_env={"STATE_DIR": str(Path(tmp) / "import")})
            rows.append(Row(f"import {module} (fresh process)", ms, "ms", "<= 250", ms <= 250))
        # On AWS chat also builds its one boto3 Lambda client at import (Lambda's init phase).
        aws = {"RUNNER_FUNCTION": "runner", "JOBS_TABLE": "jobs", "AWS_DEFAULT_REGION": "us-east-1"}
        ms = import_ms("chat.handler", extra_env=aws)
        rows.append(Row("import chat.handler with AWS settings (+ boto3 client)", ms, "ms", "(report)", None))
        for function in ("chat", "runner"):
            ms = first_response_ms(function, {"STATE_DIR": str(Path(tmp) / f"cold-{function}")})
            rows.append(Row(f"{function}: spawn to first response (uvicorn)", ms, "ms", "(report)", None))
    return rows


async def state_store(count: int) -> list[Row]:
    create, get, lifecycle = await job_round_trip_ms(count)
    return [
        Row("job store (SQLite): create with an idempotency key", create, "ms", "(report)", None),
        Row("job store (SQLite): get", get, "ms", "(report)", None),
        Row("job store (SQLite): create, start, heartbeat, finish, get", lifecycle, "ms", "(report)", None),
    ]


def aws_rows(outcomes: list[Outcome]) -> list[Row]:
    """The AWS simulation (bench/aws_queue.py): targets for the queue, the design before it to compare."""
    rows = []
    for o in outcomes:
        queue = o.design == "queue"
        label = f"AWS {o.scenario} ({'queue' if queue else 'before'})"  # README: 10 jobs, 5 chats of 1 s
        if o.scenario == "jobs":
            rows.append(
                Row(
                    f"{label}: GPU busy",
                    o.busy_pct,
                    "%",
                    ">= 95" if queue else "(compare)",
                    o.busy_pct >= 95 if queue else None,
                )
            )
            rows.append(
                Row(
                    f"{label}: not run (expired)",
                    o.expired,
                    "jobs",
                    "0" if queue else "(compare)",
                    o.expired == 0 if queue else None,
                )
            )
        else:
            rows.append(
                Row(
                    f"{label}: answered 503",
                    o.refused,
                    "chats",
                    "0" if queue else "(compare)",
                    o.refused == 0 if queue else None,
                )
            )
            rows.append(
                Row(
                    f"{label}: served in fair order",
                    float(bool(o.fair)),
                    "yes=1",
                    "1" if queue else "(compare)",
                    bool(o.fair) if queue else None,
                )
            )
        rows.append(
            Row(
                f"{label}: idle gap p50",
                o.gap_p50_ms,
                "ms",
                "<= 150" if queue else "(compare)",
                o.gap_p50_ms <= 150 if queue else None,
            )
        )
        rows.append(Row(f"{label}: idle gap max", o.gap_max_ms, "ms", "(report)", None))
        rows.append(Row(f"{label}: DynamoDB reads per generation", o.reads_per_generation, "calls", "(cost)", None))
        rows.append(Row(f"{label}: DynamoDB writes per generation", o.writes_per_generation, "calls", "(cost)", None))
        rows.append(
            Row(f"{label}: runner invocations per generation", o.invocations_per_generation, "calls", "(cost)", None)
        )
        rows.append(
            Row(f"{label}: throttled invokes per generation", o.throttles_per_generation, "calls", "(cost)", None)
        )
    return rows


async def run(quick: bool) -> list[Row]:
    rounds, count = (2, 200) if quick else (5, 400)
    rows = await added_latency(rounds, count)
    rows += await state_store(200 if quick else 1000)
    for workers in (1, 4):
        rows += await handoff(workers, clients=32, per_client=2 if quick else 4, token_delay_s=0.005)
    rows += await settle(drops=20 if quick else 50, token_delay_s=0.01)
    rows += await rejections(seconds=2.0 if quick else 4.0)
    rows += cold_start()
    p50_us, p99_us = await auth_check_us()
    rows.append(
        Row("auth check per request, cached key p50 (in-process)", p50_us / 1000, "ms", "<= 0.1", p50_us / 1000 <= 0.1)
    )
    rows.append(Row("auth check per request, cached key p99 (in-process)", p99_us / 1000, "ms", "(report)", None))
    # Logs and metrics per request, per service (a /chat crosses two: chat and the runner).
    p50_us, p99_us = await observe_cost_us()
    rows.append(
        Row("log line + metrics per request p50 (in-process)", p50_us / 1000, "ms", "<= 0.1", p50_us / 1000 <= 0.1)
    )
    rows.append(Row("log line + metrics per request p99 (in-process)", p99_us / 1000, "ms", "(report)", None))
    p50_us, _ = observe_cost_multiprocess_us()
    rows.append(Row("same, multiprocess mode (mmap files) p50", p50_us / 1000, "ms", "<= 0.1", p50_us / 1000 <= 0.1))
    scrape_ms = await queue_scrape_ms()
    rows.append(Row("/metrics: the queue's gauges, 64 waiting, p50", scrape_ms, "ms", "<= 5", scrape_ms <= 5))
    # The chat page in Chromium against curl, same stack (sync Playwright: in a thread of its own).
    page, curl = await asyncio.to_thread(first_token_page_and_curl, 10 if quick else 30)
    rows.append(Row("time to first token in the chat page, p50", median(page), "ms", "(report)", None))
    rows.append(Row("time to first token with curl (same stack), p50", median(curl), "ms", "(report)", None))
    rows += aws_rows(await asyncio.to_thread(simulate, False))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument("--aws", action="store_true", help="only the AWS simulation (bench/aws_queue.py)")
    parser.add_argument(
        "--aws-before-jobs",
        action="store_true",
        help="with --aws: also the jobs run of the design before the queue (~9 minutes)",
    )
    args = parser.parse_args()
    started = time.time()
    load_before = os.getloadavg()
    rows = aws_rows(simulate(args.aws_before_jobs)) if args.aws else asyncio.run(run(args.quick))
    header = f"{'measure':<52} {'value':>10} {'unit':<6} {'target':<12} verdict"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(row.line())
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "rows": [asdict(row) for row in rows],
    }
    RESULTS.mkdir(exist_ok=True)
    written = RESULTS / ("aws.json" if args.aws else "latest.json")
    written.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nload average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}; written to {written}")


if __name__ == "__main__":
    main()
