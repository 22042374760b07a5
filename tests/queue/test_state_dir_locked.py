"""Another local user holding ``flock -x`` on every file in STATE_DIR never freezes the runner.

Every lock attempt is non-blocking, and the database's own locks are POSIX record locks that
``flock`` does not touch: /healthz answers while a request waits for a slot it cannot get.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings
from servicekit.state.factory import StateSettings

from tests.fake_ollama import FakeOllama
from tests.servers import serve_in_thread
from tests.waiting import eventually

HEALTH_BOUND_S = 0.1  # the reliability bound


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:  # gone since /proc/locks was read
        return None


def flocked_by(pid: int, paths: list[str]) -> bool:
    """Whether ``pid``'s process group holds an flock on each of ``paths``, as /proc/locks says.

    (Not by trying the locks here: this process is the runner's, and opening then closing
    state.db here would drop SQLite's own POSIX locks on it.)
    """
    held = set()
    for line in Path("/proc/locks").read_text().splitlines():
        # "1: FLOCK  ADVISORY  WRITE 4598 fe:00:2146816 0 EOF"; a waiter's line has "->" after the number
        kind, _, _, holder, device_inode = line.split()[1:6]
        if kind == "FLOCK" and _group_of(int(holder)) == pid:
            held.add(int(device_inode.rsplit(":", 1)[1]))
    return all(os.stat(path).st_ino in held for path in paths)


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs util-linux flock")
async def test_healthz_answers_while_every_state_file_is_flocked(tmp_path: Path) -> None:
    fake = FakeOllama()
    state = StateSettings(directory=str(tmp_path / "state"))
    with serve_in_thread(fake.app) as ollama_url:
        settings = RunnerSettings(ollama_url=ollama_url, state=state)
        with serve_in_thread(create_runner_app(settings)) as runner_url:
            async with httpx.AsyncClient(base_url=runner_url, timeout=10) as client:
                assert (await client.post("/v1/run/tinyllama", json={"prompt": "warm"})).status_code == 200
                files = sorted(os.listdir(state.directory))
                assert {"runner.lock", "state.db"} <= set(files)
                command: list[str] = []
                for name in files:
                    command += ["flock", "-x", os.path.join(state.directory, name)]
                # Its own process group: the nested flocks and the sleep all hold the locks, and all must go.
                holder = await asyncio.create_subprocess_exec(*command, "sleep", "30", start_new_session=True)
                try:
                    paths = [os.path.join(state.directory, name) for name in files]
                    await eventually(lambda: flocked_by(holder.pid, paths), what="flock holding every lock")
                    assert holder.returncode is None
                    waiting = asyncio.create_task(
                        client.post("/v1/run/tinyllama", json={"prompt": "cannot run", "stream": True})
                    )
                    probes = []
                    for _ in range(20):
                        started = time.monotonic()
                        assert (await client.get("/healthz")).status_code == 200
                        probes.append(time.monotonic() - started)
                        await asyncio.sleep(0.02)  # probes spread over the wait, not a wait for anything
                    assert not waiting.done() or (await waiting).status_code == 200
                finally:
                    os.killpg(holder.pid, signal.SIGKILL)
                    await holder.wait()
                response = await waiting
    assert max(probes) < HEALTH_BOUND_S, probes
    assert response.status_code == 200
    assert fake.recorder.prompts == ["warm", "cannot run"]  # it ran once the lock was let go
