"""``python -m local invoke`` (a Docker-free ``sam local invoke``) on every file in events/, full output asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings

from tests.fake_ollama import FakeOllama
from tests.servers import REPO, serve_in_thread, service_env
from tests.test_lambda_handlers import EVENTS, EXPECTED, MODEL, normalized_body


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    lock = str(tmp_path_factory.mktemp("lock") / "runner.lock")
    with serve_in_thread(FakeOllama(models=(MODEL,)).app) as ollama_url:
        runner_app = create_runner_app(RunnerSettings(ollama_url=ollama_url, lock_path=lock))
        with serve_in_thread(runner_app) as runner_url:
            yield {"OLLAMA_HOST": ollama_url, "RUNNER_URL": runner_url, "LOCK_PATH": lock}


def invoke(function: str, event: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m local invoke`` with DEFAULT_MODEL unset, as a newcomer runs it."""
    environment = {k: v for k, v in service_env(env).items() if k != "DEFAULT_MODEL"}
    return subprocess.run(
        [sys.executable, "-m", "local", "invoke", function, "--event", str(event)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("event_file", sorted(EXPECTED))
def test_invoke_prints_the_lambda_response(stack_env: dict[str, str], event_file: str) -> None:
    function = "runner" if event_file.startswith("runner") else "chat"
    result = invoke(function, EVENTS / event_file, stack_env)
    assert result.returncode == 0, result.stderr
    assert "Unclosed" not in result.stderr  # its HTTP clients are closed before the command exits
    response = json.loads(result.stdout)
    status, content_type, body = EXPECTED[event_file]
    assert response["statusCode"] == status
    assert response["headers"]["content-type"] == content_type
    assert response["isBase64Encoded"] is False
    assert normalized_body(response["body"]) == body


def test_invoke_exits_non_zero_when_the_handler_crashes(stack_env: dict[str, str], tmp_path: Path) -> None:
    unknown = tmp_path / "not-an-api-event.json"
    unknown.write_text(json.dumps({"detail-type": "Scheduled Event", "source": "aws.events"}))
    result = invoke("chat", unknown, stack_env)
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"errorType": "HandlerCrashed", "errorMessage": "the handler raised"}
    assert "Traceback" in result.stderr


def test_event_prints_an_http_api_v2_event() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local", "event", "--method", "post", "--path", "/chat", "--body", '{"prompt": "hi"}'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    event = json.loads(result.stdout)
    reference = json.loads((EVENTS / "chat-post.json").read_text())
    assert set(event) == set(reference)
    assert set(event["requestContext"]) == set(reference["requestContext"])
    assert event["routeKey"] == "POST /chat"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["body"] == '{"prompt": "hi"}'
    assert event["headers"]["content-length"] == "16"
