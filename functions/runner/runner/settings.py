"""The runner's configuration, read from the environment once."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from servicekit.config import ConfigError, env_float, env_int, env_str
from servicekit.queue.model import (
    DEFAULT_BATCH_MAX_WAIT_S,
    DEFAULT_ESTIMATE_S,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_WAITING_PER_CALLER,
    DEFAULT_QUEUE_LEASE_S,
    QueueLimits,
)
from servicekit.state.factory import StateSettings

DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
# The lock lives in STATE_DIR by default, beside the state database.
LOCK_FILE_NAME = "runner.lock"
DEFAULT_QUEUE_TIMEOUT_S = 300.0
DEFAULT_OLLAMA_TIMEOUT_S = 600.0
# Connection refused is immediate; this bounds a host that drops packets, so an unreachable
# Ollama answers 502 in about a second instead of hanging.
DEFAULT_OLLAMA_CONNECT_TIMEOUT_S = 1.0
DEFAULT_LOCK_POLL_INTERVAL_S = 0.001
DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_BODY_READ_TIMEOUT_S = 10.0
DEFAULT_MAX_PROMPT_CHARS = 16_000
DEFAULT_GENERATION_ESTIMATE_S = DEFAULT_ESTIMATE_S
DEFAULT_JOB_PROGRESS_INTERVAL_S = 0.5
# The longest settle before the slot passes on after a cancelled or failed generation (or a
# dead holder): about one inter-token interval as measured, at most this (see runner.settle).
DEFAULT_SETTLE_MAX_S = 0.25
# A running job's runner must report within this; a job whose runner died is failed after it.
DEFAULT_JOB_LEASE_S = 30.0


def parse_ollama_host(value: str) -> str:
    """Turn ``OLLAMA_HOST`` into a base URL, accepting what the Ollama CLI accepts.

    ``host``, ``host:port``, ``:port``, ``[::1]:port`` and ``http(s)://host[:port][/path]``; no
    scheme means http, no port means 11434 (80/443 when a scheme is given), no host means
    127.0.0.1. ``0.0.0.0`` (a bind address) is reached as 127.0.0.1.
    """
    text = value.strip()
    default_port = 11434
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    elif scheme in ("http", "https"):
        default_port = 80 if scheme == "http" else 443
    else:
        raise ConfigError(f"OLLAMA_HOST must use http or https, got {value!r}")
    hostport, slash, path_rest = rest.partition("/")
    try:  # a bare IPv6 address (as Ollama accepts): bracket it so the colons are not a port
        if ipaddress.ip_address(hostport).version == 6:
            rest = f"[{hostport}]{slash}{path_rest}"
    except ValueError:
        pass
    parts = urlsplit(f"{scheme}://{rest}")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ConfigError(f"OLLAMA_HOST has an invalid port: {value!r}") from None
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    path = parts.path.rstrip("/")
    return f"{scheme}://{host}:{port}{path}"


@dataclass(frozen=True, slots=True)
class Settings:
    ollama_url: str = DEFAULT_OLLAMA_HOST
    lock_path: str = ""  # empty: <STATE_DIR>/runner.lock
    max_queue: int = DEFAULT_MAX_QUEUE
    max_waiting_per_caller: int = DEFAULT_MAX_WAITING_PER_CALLER
    batch_max_wait_s: float = DEFAULT_BATCH_MAX_WAIT_S
    queue_timeout_s: float = DEFAULT_QUEUE_TIMEOUT_S
    ollama_timeout_s: float = DEFAULT_OLLAMA_TIMEOUT_S
    ollama_connect_timeout_s: float = DEFAULT_OLLAMA_CONNECT_TIMEOUT_S
    lock_poll_interval_s: float = DEFAULT_LOCK_POLL_INTERVAL_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_read_timeout_s: float = DEFAULT_BODY_READ_TIMEOUT_S
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
    generation_estimate_s: float = DEFAULT_GENERATION_ESTIMATE_S
    settle_max_s: float = DEFAULT_SETTLE_MAX_S
    state: StateSettings = field(default_factory=StateSettings)
    job_progress_interval_s: float = DEFAULT_JOB_PROGRESS_INTERVAL_S
    job_lease_s: float = DEFAULT_JOB_LEASE_S
    # The model /readyz requires Ollama to have (chat's DEFAULT_MODEL); empty: Ollama answering is enough.
    ready_model: str = ""
    # On Lambda (AWS_LAMBDA_FUNCTION_NAME, set by Lambda): the function a drain hands over to.
    function_name: str = ""
    runner_token: str = ""  # RUNNER_TOKEN: only chat knows it; unset = loopback callers only

    def __post_init__(self) -> None:
        if not self.lock_path:
            object.__setattr__(self, "lock_path", os.path.join(self.state.directory, LOCK_FILE_NAME))
        if self.job_lease_s <= self.job_progress_interval_s * 2:
            raise ConfigError("JOB_LEASE_S must be more than twice JOB_PROGRESS_INTERVAL_S")

    @property
    def queue_limits(self) -> QueueLimits:
        return QueueLimits(
            max_queue=self.max_queue,
            max_waiting_per_caller=self.max_waiting_per_caller,
            batch_max_wait_s=self.batch_max_wait_s,
            lease_s=DEFAULT_QUEUE_LEASE_S,
            default_estimate_s=self.generation_estimate_s,
        )

    @property
    def ollama_timeout(self) -> httpx.Timeout:
        # read: the longest silence we accept from Ollama (a whole non-streamed generation, or
        # the gap between two streamed chunks). pool: only one generation runs at a time, so a
        # pooled connection is always free; waiting for one means something is wrong.
        return httpx.Timeout(
            connect=self.ollama_connect_timeout_s,
            read=self.ollama_timeout_s,
            write=self.ollama_connect_timeout_s * 10,
            pool=self.ollama_connect_timeout_s * 10,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        state = StateSettings.from_env(env)
        return cls(
            ollama_url=parse_ollama_host(env_str(env, "OLLAMA_HOST", DEFAULT_OLLAMA_HOST)),
            lock_path=env_str(env, "LOCK_PATH", os.path.join(state.directory, LOCK_FILE_NAME)),
            max_queue=env_int(env, "MAX_QUEUE", DEFAULT_MAX_QUEUE),
            max_waiting_per_caller=env_int(env, "MAX_WAITING_PER_CALLER", DEFAULT_MAX_WAITING_PER_CALLER, minimum=1),
            batch_max_wait_s=env_float(env, "BATCH_MAX_WAIT_S", DEFAULT_BATCH_MAX_WAIT_S, minimum=0.0),
            queue_timeout_s=env_float(env, "QUEUE_TIMEOUT_S", DEFAULT_QUEUE_TIMEOUT_S),
            ollama_timeout_s=env_float(env, "OLLAMA_TIMEOUT_S", DEFAULT_OLLAMA_TIMEOUT_S, minimum=0.001),
            ollama_connect_timeout_s=env_float(
                env, "OLLAMA_CONNECT_TIMEOUT_S", DEFAULT_OLLAMA_CONNECT_TIMEOUT_S, minimum=0.001
            ),
            lock_poll_interval_s=env_float(env, "LOCK_POLL_INTERVAL_S", DEFAULT_LOCK_POLL_INTERVAL_S, minimum=0.0001),
            max_body_bytes=env_int(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1),
            body_read_timeout_s=env_float(env, "BODY_READ_TIMEOUT_S", DEFAULT_BODY_READ_TIMEOUT_S, minimum=0.001),
            max_prompt_chars=env_int(env, "MAX_PROMPT_CHARS", DEFAULT_MAX_PROMPT_CHARS, minimum=1),
            generation_estimate_s=env_float(env, "GENERATION_ESTIMATE_S", DEFAULT_GENERATION_ESTIMATE_S, minimum=0.001),
            settle_max_s=env_float(env, "SETTLE_MAX_S", DEFAULT_SETTLE_MAX_S, minimum=0.0),
            state=state,
            job_progress_interval_s=env_float(
                env, "JOB_PROGRESS_INTERVAL_S", DEFAULT_JOB_PROGRESS_INTERVAL_S, minimum=0.01
            ),
            job_lease_s=env_float(env, "JOB_LEASE_S", DEFAULT_JOB_LEASE_S, minimum=0.1),
            ready_model=env_str(env, "DEFAULT_MODEL", ""),
            function_name=env_str(env, "AWS_LAMBDA_FUNCTION_NAME", ""),
            runner_token=env_str(env, "RUNNER_TOKEN", ""),
        )
