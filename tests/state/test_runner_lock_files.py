"""The runner's host lock lives in STATE_DIR by default, in private files opened without following links."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
from runner.app import create_app as create_runner_app
from runner.hostlock import FileHostLock
from runner.settings import Settings as RunnerSettings
from servicekit.state.factory import StateSettings

from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient


def test_the_lock_defaults_to_state_dir(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    assert RunnerSettings(state=StateSettings(directory=state)).lock_path == f"{state}/runner.lock"
    assert RunnerSettings.from_env({"STATE_DIR": state}).lock_path == f"{state}/runner.lock"
    assert RunnerSettings.from_env({"STATE_DIR": state, "LOCK_PATH": "/run/x.lock"}).lock_path == "/run/x.lock"


def test_lock_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        lock = FileHostLock(str(tmp_path / "state" / "runner.lock"))
        assert lock.try_acquire()
    finally:
        os.umask(old)
    try:
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "state").iterdir()}
        assert modes == {"runner.lock": 0o600}  # no second file: who waits is the queue's business
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    finally:
        lock.close()


def test_a_planted_lock_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "someone-elses-file"
    target.write_text("keep")
    (tmp_path / "runner.lock").symlink_to(target)
    lock = FileHostLock(str(tmp_path / "runner.lock"))
    with pytest.raises(OSError, match="symbolic links"):
        lock.try_acquire()
    assert target.read_text() == "keep"


def open_here(directory: Path) -> set[str]:
    """The names of the files in ``directory`` that this process has open."""
    names = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = Path(os.readlink(fd))
        except FileNotFoundError:  # the listing's own descriptor, closed since
            continue
        if target.parent == directory:
            names.add(target.name)
    return names


async def test_the_runner_closes_its_lock_files_when_it_stops(tmp_path: Path) -> None:
    fake = FakeOllama()
    state = tmp_path / "state"
    settings = RunnerSettings(ollama_url="http://ollama.test", state=StateSettings(directory=str(state)))
    app = create_runner_app(settings, ollama_transport=httpx.ASGITransport(fake.app))
    async with AppClient(app, base_url="http://runner.test") as client:
        assert (await client.post("/v1/run/tinyllama", json={"prompt": "hi"})).status_code == 200
        assert {"runner.lock", "runner.lock.holder"} <= open_here(state)
    assert not {"runner.lock", "runner.lock.holder"} & open_here(state)
