"""Configuration: every variable is read, OLLAMA_HOST takes the Ollama CLI's forms, bad values fail by name."""

from __future__ import annotations

import dataclasses

import pytest
from chat.settings import Settings as ChatSettings
from runner.settings import Settings as RunnerSettings
from runner.settings import parse_ollama_host
from servicekit.config import ConfigError

RUNNER_ENV = {
    "OLLAMA_HOST": "ollama.internal:1234",
    "LOCK_PATH": "/run/x.lock",
    "MAX_QUEUE": "3",
    "QUEUE_TIMEOUT_S": "7",
    "OLLAMA_TIMEOUT_S": "9",
    "OLLAMA_CONNECT_TIMEOUT_S": "0.5",
    "LOCK_POLL_INTERVAL_S": "0.002",
    "MAX_BODY_BYTES": "1000",
    "BODY_READ_TIMEOUT_S": "2",
    "MAX_PROMPT_CHARS": "50",
    "GENERATION_ESTIMATE_S": "3",
    "JOBS_TABLE": "jobs-table",
    "STATE_DIR": "/srv/state",
    "JOB_PROGRESS_INTERVAL_S": "0.25",
    "JOB_LEASE_S": "12",
    "SETTLE_MAX_S": "0.1",
    "DEFAULT_MODEL": "llama3.2",
    "RUNNER_TOKEN": "t0ken",
    "MAX_WAITING_PER_CALLER": "4",
    "BATCH_MAX_WAIT_S": "30",
    "AWS_LAMBDA_FUNCTION_NAME": "stack-Runner",
}
CHAT_ENV = {
    "RUNNER_URL": "http://runner:9000/",
    "DEFAULT_MODEL": "llama3.2",
    "ALLOWED_MODELS": "llama3.2, tinyllama",
    "MAX_PROMPT_CHARS": "50",
    "MAX_BODY_BYTES": "1000",
    "BODY_READ_TIMEOUT_S": "2",
    "RUNNER_TIMEOUT_S": "99",
    "RUNNER_CONNECT_TIMEOUT_S": "0.5",
    "RUNNER_FUNCTION": "stack-Runner",
    "CHAT_DEADLINE_S": "20",
    "RUNNER_INVOKE_READ_TIMEOUT_S": "901",
    "JOBS_TABLE": "jobs-table",
    "STATE_DIR": "/srv/state",
    "JOB_TTL_S": "600",
    "JOB_START_DEADLINE_S": "60",
    "AUTH": "required",
    "TRUST_PROXY_HEADERS": "yes",
    "KEY_CACHE_TTL_S": "2",
    "RUNNER_TOKEN": "t0ken",
    "PAGE_STREAMING": "on",
    "BATCH_MAX_WAIT_S": "30",
    "METRICS_KEYS": "ops, grafana",
    "MAX_QUEUE": "3",
    "MAX_WAITING_PER_CALLER": "4",
    "GENERATION_ESTIMATE_S": "3",
}


@pytest.mark.parametrize(("cls", "env"), [(RunnerSettings, RUNNER_ENV), (ChatSettings, CHAT_ENV)])
def test_every_field_comes_from_its_variable(cls: type[RunnerSettings | ChatSettings], env: dict[str, str]) -> None:
    defaults = cls.from_env({})
    configured = cls.from_env(env)
    unchanged = [f.name for f in dataclasses.fields(cls) if getattr(defaults, f.name) == getattr(configured, f.name)]
    assert unchanged == []


def test_values_are_parsed() -> None:
    runner = RunnerSettings.from_env(RUNNER_ENV)
    assert runner.ollama_url == "http://ollama.internal:1234"
    assert runner.ollama_timeout.read == 9
    assert runner.ollama_timeout.connect == 0.5
    assert (runner.state.table, runner.state.directory) == ("jobs-table", "/srv/state")
    chat = ChatSettings.from_env(CHAT_ENV)
    assert chat.runner_url == "http://runner:9000"
    assert chat.allowed_models == ("llama3.2", "tinyllama")
    assert chat.runner_timeout.read == 99
    assert chat.metrics_keys == ("ops", "grafana")
    assert chat.page_streams  # PAGE_STREAMING=on, even with RUNNER_FUNCTION set


@pytest.mark.parametrize(
    ("env", "streams"),
    [({}, True), ({"RUNNER_FUNCTION": "stack-Runner"}, False), ({"PAGE_STREAMING": "off"}, False)],
)
def test_the_page_streams_except_on_aws_unless_told(env: dict[str, str], streams: bool) -> None:
    assert ChatSettings.from_env(env).page_streams is streams


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:11434", "http://127.0.0.1:11434"),
        (":8080", "http://127.0.0.1:8080"),
        ("ollama", "http://ollama:11434"),
        ("ollama:1234", "http://ollama:1234"),
        ("http://ollama", "http://ollama:80"),
        ("https://ollama.example.com", "https://ollama.example.com:443"),
        ("https://ollama.example.com:8443/base/", "https://ollama.example.com:8443/base"),
        ("[::1]:11434", "http://[::1]:11434"),
        ("::1", "http://[::1]:11434"),
        ("  10.0.1.23:11434 ", "http://10.0.1.23:11434"),
    ],
)
def test_ollama_host_forms(value: str, url: str) -> None:
    assert parse_ollama_host(value or "127.0.0.1") == url


@pytest.mark.parametrize(
    ("cls", "variable", "value"),
    [
        (RunnerSettings, "MAX_QUEUE", "many"),
        (RunnerSettings, "MAX_QUEUE", "-1"),
        (RunnerSettings, "QUEUE_TIMEOUT_S", "nan"),
        (RunnerSettings, "OLLAMA_TIMEOUT_S", "0"),
        (RunnerSettings, "OLLAMA_HOST", "ftp://ollama"),
        (RunnerSettings, "OLLAMA_HOST", "ollama:99999"),
        (RunnerSettings, "JOB_LEASE_S", "0.5"),
        (RunnerSettings, "SETTLE_MAX_S", "-0.1"),
        (ChatSettings, "RUNNER_URL", "runner:8080"),
        (ChatSettings, "ALLOWED_MODELS", " , "),
        (ChatSettings, "MAX_BODY_BYTES", "1.5"),
        (ChatSettings, "JOB_START_DEADLINE_S", "999999"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(
    cls: type[RunnerSettings | ChatSettings], variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        cls.from_env({variable: value})


def test_default_model_must_be_allowed() -> None:
    with pytest.raises(ConfigError, match="DEFAULT_MODEL"):
        ChatSettings.from_env({"DEFAULT_MODEL": "a", "ALLOWED_MODELS": "b,c"})
    assert ChatSettings.from_env({"DEFAULT_MODEL": "a"}).allowed_models == ("a",)


@pytest.mark.parametrize(
    ("name", "value"), [("AUTH", "maybe"), ("TRUST_PROXY_HEADERS", "perhaps"), ("KEY_CACHE_TTL_S", "-1")]
)
def test_bad_auth_settings_fail_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ChatSettings.from_env({name: value})


def test_auth_modes() -> None:
    assert ChatSettings.from_env({}).auth == "auto"
    assert ChatSettings.from_env({"AUTH": "OFF"}).auth == "off"
    assert ChatSettings.from_env({"AUTH": "required"}).auth == "required"
