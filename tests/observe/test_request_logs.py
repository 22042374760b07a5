"""One JSON line per request on each service, with the fields operators need and no content unless asked."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest
from chat.app import create_app as create_chat_app
from chat.settings import Settings as ChatSettings
from runner.app import create_app as create_runner_app
from runner.settings import Settings as RunnerSettings
from servicekit.observe.settings import ObserveSettings

from tests.fake_ollama import FakeOllama
from tests.inprocess import AppClient
from tests.observe.helpers import json_lines

SECRET = "my-secret-prompt-words"


async def _ask(
    fake: FakeOllama,
    runner_settings: RunnerSettings,
    chat_settings: ChatSettings,
    observe: ObserveSettings,
    body: dict[str, Any],
) -> httpx.Response:
    runner = create_runner_app(runner_settings, ollama_transport=httpx.ASGITransport(fake.app), observe=observe)
    chat = create_chat_app(chat_settings, runner_transport=httpx.ASGITransport(runner), observe=observe)
    async with AppClient(chat, behind=[runner], base_url="http://chat.test") as client:
        return await client.post("/chat", json=body, headers={"X-Request-ID": "req-42"})


@pytest.mark.parametrize("stream", [False, True])
async def test_each_service_logs_one_json_line_per_request_without_content(
    fake: FakeOllama,
    runner_settings: RunnerSettings,
    chat_settings: ChatSettings,
    capsys: pytest.CaptureFixture[str],
    stream: bool,
) -> None:
    capsys.readouterr()
    response = await _ask(
        fake, runner_settings, chat_settings, ObserveSettings(log_format="json"), {"prompt": SECRET, "stream": stream}
    )
    assert response.status_code == 200
    err = capsys.readouterr().err
    assert SECRET not in err
    lines = [line for line in json_lines(err) if line.get("message") == "request"]
    assert [line["service"] for line in lines] == ["runner", "chat"]
    for line in lines:
        assert line["request_id"] == "req-42"
        assert line["route"] in ("/chat", "/v1/run/{model:path}")
        assert line["status"] == 200
        assert line["model"] == "tinyllama"
        assert line["caller"] == "127.0.0.1"  # AUTH=off: named by address
        assert line["tokens_in"] > 0
        assert line["tokens_out"] > 0
        assert line["queue_ms"] >= 0
        assert line["generation_ms"] >= 0
        assert line["bytes_out"] > 0
        assert line["bytes_in"] > 0
        assert line["duration_ms"] > 0
        assert line["level"] == "INFO"
        assert line["stream"] is stream
        assert "prompt" not in line
        assert "answer" not in line
    assert "first_token_ms" in lines[0]


async def test_errors_carry_their_code(
    fake: FakeOllama, runner_settings: RunnerSettings, chat_settings: ChatSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    response = await _ask(fake, runner_settings, chat_settings, ObserveSettings(log_format="json"), {"prompt": ""})
    assert response.status_code == 422
    (line,) = [line for line in json_lines(capsys.readouterr().err) if line.get("message") == "request"]
    assert (line["service"], line["status"], line["error_code"]) == ("chat", 422, "invalid_request")


async def test_log_content_puts_the_prompt_and_answer_in_chats_line(
    fake: FakeOllama, runner_settings: RunnerSettings, chat_settings: ChatSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    observe = ObserveSettings(log_format="json", log_content=True)
    await _ask(fake, runner_settings, chat_settings, observe, {"prompt": SECRET})
    chat_line = [line for line in json_lines(capsys.readouterr().err) if line.get("service") == "chat"][-1]
    assert chat_line["prompt"] == SECRET
    assert isinstance(chat_line["answer"], str)
    assert chat_line["answer"]


def test_text_is_the_default_and_json_is_a_setting() -> None:
    assert ObserveSettings.from_env({}).log_format == "text"
    assert ObserveSettings.from_env({"LOG_FORMAT": "json"}).log_format == "json"
    assert ObserveSettings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "f"}).metrics == "emf"
    assert dataclasses.replace(ObserveSettings(), log_content=True).log_content
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        ObserveSettings.from_env({"LOG_FORMAT": "xml"})
