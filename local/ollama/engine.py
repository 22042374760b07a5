"""What an engine is, and the ``echo`` engine (deterministic, no model)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

from servicekit.generation import GenerationOptions as Options

DoneReason = Literal["stop", "length"]


class Message(TypedDict):
    role: str
    content: str


@dataclass(frozen=True)
class Finished:
    """The last thing an engine yields."""

    prompt_tokens: int
    completion_tokens: int
    done_reason: DoneReason


@dataclass(frozen=True)
class ModelCard:
    """What /api/tags, /api/show and /api/ps say about the served model."""

    name: str
    family: str
    parameter_size: str
    quantization_level: str
    size: int
    digest: str
    template: str = ""
    model_info: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    card: ModelCard

    def load(self) -> float:
        """Load the model if needed; seconds spent loading (0 when it already was)."""
        ...

    @property
    def loaded(self) -> bool: ...

    def generate(
        self, messages: list[Message], options: Options, cancelled: threading.Event
    ) -> Iterator[str | Finished]:
        """Yield text pieces as they are produced, then one :class:`Finished`. Runs in a worker thread;
        stops early when ``cancelled`` is set."""
        ...


class EchoEngine:
    """Answers with the last user message's words, one word a token, ``delay_s`` apart."""

    def __init__(self, name: str = "echo", delay_s: float = 0.0) -> None:
        self.card = ModelCard(
            name=name, family="echo", parameter_size="0", quantization_level="none", size=0, digest="0" * 64
        )
        self.delay_s = delay_s
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> float:
        was_loaded, self._loaded = self._loaded, True
        return 0.0 if was_loaded else 0.001

    def generate(
        self, messages: list[Message], options: Options, cancelled: threading.Event
    ) -> Iterator[str | Finished]:
        user = [m["content"] for m in messages if m["role"] == "user"] or [""]
        words = user[-1].split()
        limit = options.get("num_predict", -1)
        capped = 0 <= limit < len(words)
        pieces = [f"{word} " for word in (words[:limit] if capped else words)]
        produced = 0
        for piece in pieces:
            if cancelled.wait(self.delay_s) if self.delay_s else cancelled.is_set():
                break
            produced += 1
            yield piece
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        yield Finished(prompt_tokens, produced, "length" if capped else "stop")
