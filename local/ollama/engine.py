"""What an engine is: the protocol both engines (``echo``, ``llama``) implement, and what they return."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypedDict

from servicekit.generation import GenerationOptions as Options

DoneReason = Literal["stop", "length"]
# Ollama's ``format``: "json" (any JSON value) or a JSON schema the answer must match.
ResponseFormat = Literal["json"] | dict[str, Any]


class Message(TypedDict):
    role: str
    content: str


@dataclass(frozen=True)
class Finished:
    """The last thing an engine yields: token counts as the model's tokenizer counts them."""

    prompt_tokens: int
    completion_tokens: int
    done_reason: DoneReason


@dataclass(frozen=True)
class Embedded:
    """One vector per input (not normalized), and the tokens read to make them."""

    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True)
class ModelCard:
    """What /api/tags, /api/show and /api/ps say about the served model."""

    name: str
    family: str
    parameter_size: str
    quantization_level: str
    size: int
    digest: str
    modified_at: datetime
    context_length: int
    template: str = ""
    license: str = ""
    model_info: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    card: ModelCard

    def load(self) -> float:
        """Load the model if needed; seconds spent loading (0 when it already was)."""
        ...

    def unload(self) -> None:
        """Free the model (Ollama's ``keep_alive``); the next request loads it again."""
        ...

    @property
    def loaded(self) -> bool: ...

    def check_format(self, fmt: ResponseFormat) -> None:
        """Raise :class:`BadRequest` for a format this engine cannot enforce (before any answer starts)."""
        ...

    def generate(
        self, messages: list[Message], options: Options, fmt: ResponseFormat | None, cancelled: threading.Event
    ) -> Iterator[str | Finished]:
        """Yield text pieces as they are produced, then one :class:`Finished`. Runs in a worker thread;
        stops early when ``cancelled`` is set. ``fmt`` constrains the answer to JSON (or a schema)."""
        ...

    def embed(self, texts: list[str], truncate: bool) -> Embedded:
        """One embedding per text. Runs in the worker thread. Raises :class:`BadRequest` when a
        text is longer than the context and ``truncate`` is false."""
        ...
