"""How a service reports: log format, whether content is logged, which metrics backend."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from servicekit.config import env_bool, env_choice, env_str

LogFormat = Literal["text", "json"]
MetricsBackend = Literal["prometheus", "emf", "off"]


@dataclass(frozen=True, slots=True)
class ObserveSettings:
    log_format: LogFormat = "text"  # LOG_FORMAT: text for a terminal (make up), json for collectors
    log_content: bool = False  # LOG_CONTENT=1: prompts and answers in the log lines (off: never)
    metrics: MetricsBackend = "prometheus"  # METRICS: emf under Lambda (its default there)
    # prometheus_client's own variable: set, every process of a service writes its samples to
    # files there and chat's /metrics adds them up (uvicorn workers, chat and runner on one host).
    multiprocess_dir: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ObserveSettings:
        on_lambda = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
        return cls(
            log_format=cast(
                LogFormat, env_choice(env, "LOG_FORMAT", "json" if on_lambda else "text", ("text", "json"))
            ),
            log_content=env_bool(env, "LOG_CONTENT", False),
            metrics=cast(
                MetricsBackend,
                env_choice(env, "METRICS", "emf" if on_lambda else "prometheus", ("prometheus", "emf", "off")),
            ),
            multiprocess_dir=env_str(env, "PROMETHEUS_MULTIPROC_DIR", ""),
        )
