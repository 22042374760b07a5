"""``python -m chat.top``: a live view for operators — what runs, what waits, what just finished.

Reads the state database in STATE_DIR (as chat does), refreshed in place every second (rich);
``--once`` prints one frame. Today it shows jobs: the running generation, the jobs waiting in
order, and recent outcomes. When the fair queue lands, "waiting" becomes the queue's tickets in
served order — position, caller, class (interactive or batch), model, waited — and the running
line gains tokens/s; on AWS, ``--table`` reads the same from DynamoDB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from servicekit.jobs.model import Job
from servicekit.state.factory import StateSettings, state_database
from servicekit.state.stats import JobBoard, job_board

REFRESH_S = 1.0


def _ago(now: float, then: float | None) -> str:
    return "-" if then is None else f"{max(0.0, now - then):.1f}s"


def _table(title: str, columns: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left", expand=True)
    for column in columns:
        table.add_column(column)
    return table


def render(board: JobBoard, *, now: float) -> RenderableType:
    running = _table("running", ("job", "caller", "model", "elapsed", "generated"))
    for job in board["running"]:
        running.add_row(
            job["id"][:8], job["owner"], job["model"], _ago(now, job["started_at"]), f"{len(job['response'])} chars"
        )
    if not board["running"]:
        running.add_row("-", "(the slot is free)", "", "", "")
    waiting = _table(f"waiting ({len(board['queued'])})", ("position", "job", "caller", "model", "waited"))
    for position, job in enumerate(board["queued"], start=1):
        waiting.add_row(str(position), job["id"][:8], job["owner"], job["model"], _ago(now, job["created_at"]))
    recent = _table("recent", ("job", "caller", "model", "status", "error", "took", "tokens/s"))
    for job in board["recent"]:
        recent.add_row(
            job["id"][:8], job["owner"], job["model"], job["status"], _error_code(job),
            _took(job), _speed(job),
        )  # fmt: skip
    return Group(running, waiting, recent)


def _error_code(job: Job) -> str:
    return str((job["error"] or {}).get("code", ""))


def _took(job: Job) -> str:
    started, finished = job["started_at"], job["finished_at"]
    return "-" if started is None or finished is None else f"{finished - started:.1f}s"


def _speed(job: Job) -> str:
    speed = (job["timings"] or {}).get("tokens_per_s")
    return "-" if speed is None else f"{speed:g}"


async def _board(state: StateSettings) -> JobBoard:
    return await job_board(state_database(state.directory), now=time.time())


def main(argv: list[str] | None = None, out: TextIO | None = None, env: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chat.top", description=__doc__.split("\n")[0])
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    args = parser.parse_args(argv)
    state = StateSettings.from_env(os.environ if env is None else env)
    if state.table:
        print(
            "chat.top reads the SQLite state in STATE_DIR; DynamoDB (JOBS_TABLE) comes with the queue", file=sys.stderr
        )
        return 2
    console = Console(file=out) if out is not None else Console()
    if args.once:
        console.print(render(asyncio.run(_board(state)), now=time.time()))
        return 0
    with Live(console=console, refresh_per_second=4, screen=False) as live:
        try:
            while True:
                live.update(render(asyncio.run(_board(state)), now=time.time()))
                time.sleep(REFRESH_S)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
