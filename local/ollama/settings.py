"""Which engine and model the local model server runs, from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from servicekit.config import ConfigError, env_float, env_int, env_str

from local.ollama.echo_engine import EchoEngine
from local.ollama.engine import Engine

DEFAULT_PORT = 11434
# The name the default model (SmolLM2-135M) is served under; `local up` gives it to chat as DEFAULT_MODEL.
DEFAULT_MODEL_NAME = "smollm2:135m"
ENGINES = ("llama", "echo")


def engine_from_env(env: Mapping[str, str] | None = None) -> Engine:
    env = os.environ if env is None else env
    kind = env_str(env, "LOCAL_ENGINE", "llama")
    if kind not in ENGINES:
        raise ConfigError(f"LOCAL_ENGINE must be one of {list(ENGINES)}, got {kind!r}")
    if kind == "echo":
        return EchoEngine(
            name=env_str(env, "LOCAL_MODEL_NAME", "echo"), delay_s=env_float(env, "LOCAL_ECHO_DELAY_S", 0.0)
        )
    from local.ollama.llama_engine import LlamaEngine
    from local.ollama.model_file import default_model_path

    custom = env_str(env, "LOCAL_MODEL_PATH", "")
    if custom and not Path(custom).is_file():
        raise ConfigError(f"LOCAL_MODEL_PATH must name a GGUF file, got {custom!r}")
    path = Path(custom) if custom else default_model_path()
    default_name = DEFAULT_MODEL_NAME if not custom else path.stem.lower()
    threads = env_int(env, "LOCAL_THREADS", 0) or None
    return LlamaEngine(path, name=env_str(env, "LOCAL_MODEL_NAME", default_name), threads=threads)


def port_from_env(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return env_int(env, "OLLAMA_PORT", DEFAULT_PORT, minimum=1)
