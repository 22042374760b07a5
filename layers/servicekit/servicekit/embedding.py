"""The one embedding request (Ollama's ``/api/embed``, ``/api/embeddings`` and OpenAI's ``/v1/embeddings``
are translated into it), and its validation. Embeddings run under the same slot as generations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, NotRequired, TypedDict

from servicekit.contract import Items, Length, PromptText, Range
from servicekit.errors import InvalidRequest, PromptTooLong
from servicekit.generation import GenerationOptions, KeepAlive, parse_keep_alive, parse_options, unicode_text

MAX_INPUTS = 256


class EmbeddingRequest(TypedDict):
    input: Annotated[list[Annotated[str, Length(1, 1_000_000), PromptText()]], Items(1, MAX_INPUTS)]
    truncate: NotRequired[bool]
    dimensions: NotRequired[Annotated[int, Range(1, 65536)]]
    options: NotRequired[GenerationOptions]
    keep_alive: NotRequired[KeepAlive]


EMBEDDING_FIELDS: frozenset[str] = frozenset(EmbeddingRequest.__annotations__)


def parse_embedding_request(data: Mapping[str, Any], *, max_prompt_chars: int) -> EmbeddingRequest:
    """Validate a decoded body (``input`` already a list); the inputs together obey MAX_PROMPT_CHARS."""
    unknown = set(data) - EMBEDDING_FIELDS
    if unknown:
        raise InvalidRequest(f"Unknown fields {sorted(unknown)}; allowed: {sorted(EMBEDDING_FIELDS)}.")
    inputs = data.get("input")
    if (
        not isinstance(inputs, list)
        or not 1 <= len(inputs) <= MAX_INPUTS
        or not all(isinstance(text, str) and text for text in inputs)
    ):
        raise InvalidRequest(f"'input' must be a non-empty string or a list of 1 to {MAX_INPUTS} non-empty strings.")
    size = sum(len(text) for text in inputs)
    if size > max_prompt_chars:
        raise PromptTooLong(f"The input is {size} characters; the limit is {max_prompt_chars}.")
    request: EmbeddingRequest = {"input": [unicode_text(text, f"input[{i}]") for i, text in enumerate(inputs)]}
    if "truncate" in data:
        if not isinstance(data["truncate"], bool):
            raise InvalidRequest("'truncate' must be true or false.")
        request["truncate"] = data["truncate"]
    if "dimensions" in data:
        dimensions = data["dimensions"]
        # JSON Schema counts 3.0 as an integer, and so do we.
        whole = isinstance(dimensions, int) or (isinstance(dimensions, float) and dimensions.is_integer())
        if not whole or isinstance(dimensions, bool) or not 1 <= dimensions <= 65536:
            raise InvalidRequest("'dimensions' must be a whole number from 1 to 65536.")
        request["dimensions"] = int(dimensions)
    if "options" in data:
        request["options"] = parse_options(data["options"])
    if "keep_alive" in data:
        request["keep_alive"] = parse_keep_alive(data["keep_alive"])
    return request
