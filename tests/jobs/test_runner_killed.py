"""A runner SIGKILLed in the middle of a job: the job ends ``failed`` (runner_lost), never ``running`` forever."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from servicekit.state.factory import StateSettings

from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient
from tests.jobs.helpers import status_is, wait_for
from tests.servers import serve_in_thread, uvicorn_process

LEASE_S = 2.0  # progress is written every 0.1 s; the margin absorbs a loaded CI machine


@pytest.mark.slow
async def test_killed_runner_leaves_the_job_failed(tmp_path: Path, chat_settings: ChatSettings) -> None:
    fake = FakeOllama()
    fake.faults.token_delay_s = 0.05
    fake.faults.tokens = 400
    state_dir = str(tmp_path / "state")
    with serve_in_thread(fake.app) as ollama_url:
        env = {
            "OLLAMA_HOST": ollama_url,
            "LOCK_PATH": str(tmp_path / "r.lock"),
            "STATE_DIR": state_dir,
            "JOB_LEASE_S": str(LEASE_S),
            "JOB_PROGRESS_INTERVAL_S": "0.1",
        }
        with uvicorn_process("runner", "runner.app:app", env) as (runner_url, process):
            settings = dataclasses.replace(
                chat_settings, runner_url=runner_url, state=StateSettings(directory=state_dir)
            )
            app = create_chat_app(settings)
            async with AppClient(app, base_url="http://chat.test") as chat:
                created = await chat.post("/v1/jobs", json={"prompt": "a long story"})
                assert created.status_code == 202, created.text
                job_id = created.json()["id"]
                await wait_for(chat, job_id, lambda j: j["status"] == "running" and j["response"] != "")
                os.kill(process.pid, signal.SIGKILL)
                killed_at = time.monotonic()
                job = await wait_for(chat, job_id, status_is("failed"), timeout_s=LEASE_S + 5)
                noticed_after = time.monotonic() - killed_at
    assert job["error"]["code"] == "runner_lost"
    assert job["response"] != ""  # the progress saved before the crash is kept
    assert noticed_after < LEASE_S + 1
