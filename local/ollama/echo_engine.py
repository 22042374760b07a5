"""The ``echo`` engine: deterministic, no model, for fast tests.

- A token is a whitespace-delimited piece of text (a word with the spaces after it), so
  ``eval_count`` is the number of pieces answered and ``prompt_eval_count`` the words sent.
- It answers with the last user message. With ``format: "json"`` it answers
  ``{"echo": "<that message>"}``; with a JSON schema, the simplest value matching it (each string
  is the message, each number its word count, each boolean true, each array one item).
- An embedding is the message's words hashed into ``ECHO_DIMENSIONS`` signed buckets: the same
  text always gives the same vector, and texts sharing words are closer than texts that share none.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from servicekit.generation import GenerationOptions as Options

from local.ollama.engine import Embedded, Finished, Message, ModelCard, ResponseFormat
from local.ollama.errors import BadRequest

ECHO_DIMENSIONS = 64
ECHO_CONTEXT = 2048  # words


def pieces(text: str) -> list[str]:
    """The echo engine's tokens: each run of non-space characters with the spaces after it."""
    return re.findall(r"\S+\s*", text)


def example_of(schema: object, text: str) -> Any:
    """The simplest value matching a JSON schema, built from ``text``."""
    if not isinstance(schema, dict):
        return text
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_of(schema[key][0], text)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    properties = schema.get("properties")
    if kind == "object":
        return {k: example_of(v, text) for k, v in properties.items()} if isinstance(properties, dict) else {}
    if kind == "array":
        return [example_of(schema["items"], text)] if "items" in schema else []
    simple = {"integer": len(text.split()), "number": float(len(text.split())), "boolean": True, "null": None}
    return simple.get(str(kind), text)


def hashed_embedding(text: str) -> list[float]:
    vector = [0.0] * ECHO_DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        vector[int.from_bytes(digest[:4], "big") % ECHO_DIMENSIONS] += 1.0 if digest[4] & 1 else -1.0
    return vector


class EchoEngine:
    """Answers with the last user message, one piece a token, ``delay_s`` apart."""

    def __init__(self, name: str = "echo", delay_s: float = 0.0) -> None:
        self.card = ModelCard(
            name=name,
            family="echo",
            parameter_size="0",
            quantization_level="none",
            size=0,
            digest=hashlib.sha256(f"echo:{name}".encode()).hexdigest(),
            modified_at=datetime.now(UTC),  # no file: when this server started
            context_length=ECHO_CONTEXT,
        )
        self.delay_s = delay_s
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> float:
        was_loaded, self._loaded = self._loaded, True
        return 0.0 if was_loaded else 0.001

    def unload(self) -> None:
        self._loaded = False

    def check_format(self, fmt: ResponseFormat) -> None:
        pass  # any schema has a simplest value

    def generate(
        self, messages: list[Message], options: Options, fmt: ResponseFormat | None, cancelled: threading.Event
    ) -> Iterator[str | Finished]:
        user = [m["content"] for m in messages if m["role"] == "user"] or [""]
        text = " ".join(user[-1].split())
        if fmt == "json":
            text = json.dumps({"echo": text}, ensure_ascii=False)
        elif fmt is not None:
            text = json.dumps(example_of(fmt, text), ensure_ascii=False)
        else:
            text = "".join(f"{word} " for word in text.split())
        answer = pieces(text)
        limit = options.get("num_predict", -1)
        capped = 0 <= limit < len(answer)
        produced = 0
        for piece in answer[:limit] if capped else answer:
            if cancelled.wait(self.delay_s) if self.delay_s else cancelled.is_set():
                break
            produced += 1
            yield piece
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        yield Finished(prompt_tokens, produced, "length" if capped else "stop")

    def embed(self, texts: list[str], truncate: bool) -> Embedded:
        words = [text.split() for text in texts]
        if not truncate and any(len(w) > ECHO_CONTEXT for w in words):
            raise BadRequest("the input length exceeds the context length")
        kept = [" ".join(w[:ECHO_CONTEXT]) for w in words]
        return Embedded([hashed_embedding(text) for text in kept], sum(min(len(w), ECHO_CONTEXT) for w in words))
