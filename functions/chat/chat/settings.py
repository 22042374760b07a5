"""Chat's configuration, read from the environment once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

import httpx
from servicekit.config import ConfigError, env_bool, env_choice, env_float, env_int, env_list, env_str, env_url
from servicekit.queue.model import (
    DEFAULT_BATCH_MAX_WAIT_S,
    DEFAULT_ESTIMATE_S,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_WAITING_PER_CALLER,
    DEFAULT_QUEUE_LEASE_S,
    QueueLimits,
)
from servicekit.state.factory import StateSettings

from chat.auth import AUTH_MODES, DEFAULT_KEY_CACHE_TTL_S, AuthMode

DEFAULT_RUNNER_URL = "http://127.0.0.1:8080"
DEFAULT_MODEL = "tinyllama"
DEFAULT_MAX_PROMPT_CHARS = 16_000
DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_BODY_READ_TIMEOUT_S = 10.0
# The runner may queue a request for QUEUE_TIMEOUT_S (300) and then wait OLLAMA_TIMEOUT_S (600)
# for Ollama; chat waits longer than both together so the runner's own, more precise error
# (503 queue_timeout, 504 upstream_timeout) reaches the client instead of chat's.
DEFAULT_RUNNER_TIMEOUT_S = 960.0
DEFAULT_RUNNER_CONNECT_TIMEOUT_S = 1.0
# API Gateway's HTTP API gives up at 30 s; chat answers (503 runner_busy) before that.
DEFAULT_CHAT_DEADLINE_S = 27.0
# On AWS chat invokes the runner function directly; its read timeout must outlast the runner's
# own 900 s function timeout (chat's own Lambda timeout, 29 s, ends it first in practice).
DEFAULT_RUNNER_INVOKE_READ_TIMEOUT_S = 910.0
DEFAULT_JOB_TTL_S = 24 * 3600.0
# Lambda's async queue keeps an event at most this long (MaximumEventAgeInSeconds in template.yaml).
DEFAULT_JOB_START_DEADLINE_S = 15 * 60.0
# Whether the chat page streams from POST /chat or polls the jobs API. "auto": stream, except on
# AWS (RUNNER_FUNCTION set), where API Gateway's HTTP API buffers responses and cuts them at 30 s.
PageStreaming = Literal["auto", "on", "off"]
PAGE_STREAMING_CHOICES: tuple[PageStreaming, ...] = ("auto", "on", "off")


@dataclass(frozen=True, slots=True)
class Settings:
    runner_url: str = DEFAULT_RUNNER_URL
    default_model: str = DEFAULT_MODEL
    allowed_models: tuple[str, ...] = (DEFAULT_MODEL,)
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_read_timeout_s: float = DEFAULT_BODY_READ_TIMEOUT_S
    runner_timeout_s: float = DEFAULT_RUNNER_TIMEOUT_S
    runner_connect_timeout_s: float = DEFAULT_RUNNER_CONNECT_TIMEOUT_S
    runner_function: str = ""  # set on AWS: invoke this Lambda function instead of RUNNER_URL
    chat_deadline_s: float = DEFAULT_CHAT_DEADLINE_S
    runner_invoke_read_timeout_s: float = DEFAULT_RUNNER_INVOKE_READ_TIMEOUT_S
    state: StateSettings = field(default_factory=StateSettings)
    job_ttl_s: float = DEFAULT_JOB_TTL_S
    job_start_deadline_s: float = DEFAULT_JOB_START_DEADLINE_S
    batch_max_wait_s: float = DEFAULT_BATCH_MAX_WAIT_S
    # On AWS chat admits tickets to the queue itself (the runner cannot wait: reserved concurrency 1).
    max_queue: int = DEFAULT_MAX_QUEUE
    max_waiting_per_caller: int = DEFAULT_MAX_WAITING_PER_CALLER
    generation_estimate_s: float = DEFAULT_ESTIMATE_S
    auth: AuthMode = "auto"  # AUTH unset: see chat.auth
    trust_proxy_headers: bool = False
    key_cache_ttl_s: float = DEFAULT_KEY_CACHE_TTL_S
    runner_token: str = ""  # RUNNER_TOKEN: shared with the runner (local, compose); unused on AWS
    metrics_keys: tuple[str, ...] = ()  # METRICS_KEYS: names of the API keys that may read /metrics
    page_streaming: PageStreaming = "auto"

    def __post_init__(self) -> None:
        if self.job_start_deadline_s > self.job_ttl_s:
            raise ConfigError("JOB_START_DEADLINE_S must not exceed JOB_TTL_S")
        if self.default_model not in self.allowed_models:
            raise ConfigError(
                f"DEFAULT_MODEL {self.default_model!r} must be one of ALLOWED_MODELS {list(self.allowed_models)}"
            )

    @property
    def page_streams(self) -> bool:
        """Whether the page streams (``/chat``) rather than polls jobs; see ``PAGE_STREAMING``."""
        if self.page_streaming == "auto":
            return not self.runner_function
        return self.page_streaming == "on"

    @property
    def queue_limits(self) -> QueueLimits:
        """The queue's rules as the runner applies them: chat admits tickets on AWS, and reads the
        queue in the same order everywhere (job positions, /metrics, chat.top)."""
        return QueueLimits(
            max_queue=self.max_queue,
            max_waiting_per_caller=self.max_waiting_per_caller,
            batch_max_wait_s=self.batch_max_wait_s,
            lease_s=DEFAULT_QUEUE_LEASE_S,
            default_estimate_s=self.generation_estimate_s,
        )

    @property
    def runner_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.runner_connect_timeout_s,
            read=self.runner_timeout_s,
            write=self.runner_connect_timeout_s * 10,
            pool=self.runner_connect_timeout_s * 10,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        default_model = env_str(env, "DEFAULT_MODEL", DEFAULT_MODEL)
        return cls(
            runner_url=env_url(env, "RUNNER_URL", DEFAULT_RUNNER_URL),
            default_model=default_model,
            allowed_models=env_list(env, "ALLOWED_MODELS", (default_model,)),
            max_prompt_chars=env_int(env, "MAX_PROMPT_CHARS", DEFAULT_MAX_PROMPT_CHARS, minimum=1),
            max_body_bytes=env_int(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1),
            body_read_timeout_s=env_float(env, "BODY_READ_TIMEOUT_S", DEFAULT_BODY_READ_TIMEOUT_S, minimum=0.001),
            runner_timeout_s=env_float(env, "RUNNER_TIMEOUT_S", DEFAULT_RUNNER_TIMEOUT_S, minimum=0.001),
            runner_connect_timeout_s=env_float(
                env, "RUNNER_CONNECT_TIMEOUT_S", DEFAULT_RUNNER_CONNECT_TIMEOUT_S, minimum=0.001
            ),
            runner_function=env_str(env, "RUNNER_FUNCTION", ""),
            chat_deadline_s=env_float(env, "CHAT_DEADLINE_S", DEFAULT_CHAT_DEADLINE_S, minimum=0.001),
            runner_invoke_read_timeout_s=env_float(
                env, "RUNNER_INVOKE_READ_TIMEOUT_S", DEFAULT_RUNNER_INVOKE_READ_TIMEOUT_S, minimum=0.001
            ),
            state=StateSettings.from_env(env),
            job_ttl_s=env_float(env, "JOB_TTL_S", DEFAULT_JOB_TTL_S, minimum=1),
            job_start_deadline_s=env_float(env, "JOB_START_DEADLINE_S", DEFAULT_JOB_START_DEADLINE_S, minimum=1),
            batch_max_wait_s=env_float(env, "BATCH_MAX_WAIT_S", DEFAULT_BATCH_MAX_WAIT_S),
            max_queue=env_int(env, "MAX_QUEUE", DEFAULT_MAX_QUEUE),
            max_waiting_per_caller=env_int(env, "MAX_WAITING_PER_CALLER", DEFAULT_MAX_WAITING_PER_CALLER, minimum=1),
            generation_estimate_s=env_float(env, "GENERATION_ESTIMATE_S", DEFAULT_ESTIMATE_S, minimum=0.001),
            auth=cast(AuthMode, env_choice(env, "AUTH", "auto", AUTH_MODES)),
            trust_proxy_headers=env_bool(env, "TRUST_PROXY_HEADERS", False),
            key_cache_ttl_s=env_float(env, "KEY_CACHE_TTL_S", DEFAULT_KEY_CACHE_TTL_S, minimum=0),
            runner_token=env_str(env, "RUNNER_TOKEN", ""),
            metrics_keys=env_list(env, "METRICS_KEYS", ()),
            page_streaming=cast(PageStreaming, env_choice(env, "PAGE_STREAMING", "auto", PAGE_STREAMING_CHOICES)),
        )
