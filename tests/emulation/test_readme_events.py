"""Every file in events/ through ``python -m local invoke`` against a ``local up`` stack (echo engine,
serving under the default model's name), answering the status the README documents for it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from local.ollama.settings import DEFAULT_MODEL_NAME
from tests.emulation.test_up import _ports, local_up
from tests.servers import REPO, service_env

pytestmark = pytest.mark.slow

EVENT_ROW = re.compile(r"^\| `events/([\w.-]+\.json)` \| (chat|runner) \| (\d{3})\b", re.MULTILINE)


def documented() -> dict[str, tuple[str, int]]:
    rows = EVENT_ROW.findall((REPO / "README.md").read_text())
    return {name: (function, int(status)) for name, function, status in rows}


def test_the_readme_documents_every_event() -> None:
    assert set(documented()) == {p.name for p in (REPO / "events").glob("*.json")}


def test_every_event_answers_as_documented_against_local_up(tmp_path: Path) -> None:
    ports = _ports()
    lock = str(tmp_path / "up.lock")
    env = {
        **ports,
        "LOCAL_ENGINE": "echo",
        "LOCAL_MODEL_NAME": DEFAULT_MODEL_NAME,
        "LOCK_PATH": lock,
        "RUNNER_WORKERS": "1",
    }
    # What a newcomer's shell has after `make up` on the default ports; here the ports are free ones.
    invoke_env = {k: v for k, v in service_env({}).items() if k != "DEFAULT_MODEL"}
    invoke_env |= {
        "RUNNER_URL": f"http://127.0.0.1:{ports['RUNNER_PORT']}",
        "LOCK_PATH": lock,
        "OLLAMA_HOST": f"127.0.0.1:{ports['OLLAMA_PORT']}",
    }
    answers: dict[str, int] = {}
    with local_up(env) as (_, lines):
        assert "ready:" in "".join(lines), "".join(lines)
        for name, (function, _) in sorted(documented().items()):
            result = subprocess.run(
                [sys.executable, "-m", "local", "invoke", function, "--event", f"events/{name}"],
                cwd=REPO,
                env=invoke_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            answers[name] = json.loads(result.stdout)["statusCode"]
    assert answers == {name: status for name, (_, status) in documented().items()}
