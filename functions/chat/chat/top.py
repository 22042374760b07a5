"""``python -m chat.top``: a live view for operators — what runs, what waits, what just finished.

Reads the queue through its store (``QueueStore.snapshot``, the order and ETAs the runner uses),
refreshed in place every second (rich); ``--once`` prints one frame. Shows the running ticket
(caller, class, model, elapsed), the waiting tickets in served order (position, caller, class,
model, waited, ETA) and, from the jobs in STATE_DIR, recent outcomes. ``--table`` (or
JOBS_TABLE) reads the queue from DynamoDB instead (recent outcomes are not listed there: that
would be a scan of the table).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from servicekit.jobs.model import Job
from servicekit.queue.model import Snapshot, Ticket
from servicekit.queue.store import QueueStore
from servicekit.state.factory import StateSettings, queue_store, state_database
from servicekit.state.stats import job_board

from chat.settings import Settings

REFRESH_S = 1.0


def _ago(now: float, then: float | None) -> str:
    return "-" if then is None else f"{max(0.0, now - then):.1f}s"


def _table(title: str, columns: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left", expand=True)
    for column in columns:
        table.add_column(column)
    return table


def _what(ticket: Ticket) -> str:
    return f"job {ticket['job_id'][:8]}" if ticket["job_id"] else "request"


def render(snapshot: Snapshot, recent_jobs: Sequence[Job] | None, *, now: float) -> RenderableType:
    """One frame: the running ticket, the waiting ones in order, recent job outcomes (None: not kept here)."""
    running = _table("running", ("caller", "class", "model", "what", "elapsed"))
    if (ticket := snapshot.running) is not None:
        running.add_row(
            ticket["caller"], ticket["ticket_class"], ticket["model"], _what(ticket), _ago(now, ticket["started_at"])
        )
    else:
        running.add_row("(the slot is free)", "", "", "", "")
    waiting = _table(
        f"waiting ({len(snapshot.waiting)})", ("position", "caller", "class", "model", "what", "waited", "eta")
    )
    for ticket in snapshot.waiting:
        standing = snapshot.standings[ticket["id"]]
        waiting.add_row(
            str(standing.position),
            ticket["caller"],
            ticket["ticket_class"],
            ticket["model"],
            _what(ticket),
            _ago(now, ticket["created_at"]),
            f"{standing.eta_s:.1f}s",
        )
    if recent_jobs is None:
        return Group(running, waiting)
    recent = _table("recent jobs", ("job", "caller", "model", "status", "error", "took", "tokens/s"))
    for job in recent_jobs:
        recent.add_row(
            job["id"][:8],
            job["owner"],
            job["model"],
            job["status"],
            _error_code(job),
            _took(job),
            _speed(job),
        )
    return Group(running, waiting, recent)


def _error_code(job: Job) -> str:
    return str((job["error"] or {}).get("code", ""))


def _took(job: Job) -> str:
    started, finished = job["started_at"], job["finished_at"]
    return "-" if started is None or finished is None else f"{finished - started:.1f}s"


def _speed(job: Job) -> str:
    speed = (job["timings"] or {}).get("tokens_per_s")
    return "-" if speed is None else f"{speed:g}"


async def frame(queue: QueueStore, state: StateSettings) -> RenderableType:
    """Read the queue (and, with SQLite, the recent jobs) and render them."""
    now = time.time()
    snapshot = await queue.snapshot(now=now)
    recent = None if state.table else (await job_board(state_database(state.directory), now=now))["recent"]
    return render(snapshot, recent, now=now)


def main(argv: list[str] | None = None, out: TextIO | None = None, env: dict[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chat.top", description=__doc__.split("\n")[0])
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument("--table", help="the DynamoDB state table (AWS; default JOBS_TABLE, else STATE_DIR)")
    args = parser.parse_args(argv)
    settings = Settings.from_env(os.environ if env is None else env)
    state = settings.state if args.table is None else dataclasses.replace(settings.state, table=args.table)
    queue = queue_store(state, settings.queue_limits)
    console = Console(file=out) if out is not None else Console()

    async def show() -> None:
        if args.once:
            console.print(await frame(queue, state))
            return
        with Live(console=console, refresh_per_second=4, screen=False) as live:
            while True:
                live.update(await frame(queue, state))
                await asyncio.sleep(REFRESH_S)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(show())
    return 0


if __name__ == "__main__":
    sys.exit(main())
