"""The markers that put limits on the request TypedDicts, and the JSON Schema derived from them.

The request contract is written once, as TypedDicts whose fields carry their limits as
``Annotated`` metadata (``Annotated[float, Range(0, 1000)]``). The validators in
:mod:`servicekit.generation` read the same annotations, and :func:`json_schema` turns them into
the schemas of chat's OpenAPI document, so the three cannot drift apart. (``typing.get_type_hints``
without ``include_extras`` still gives the plain types, for code that only wants those.)
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    NotRequired,
    Required,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

INT_LIMIT = 2**31
# What str.strip() takes for whitespace, spelled out: the schema's "not blank" pattern must mean in
# every regex engine what the validators mean. ECMA's \s (OpenAPI tools') is not Python's: it
# lacks \x1c-\x1f and \x85 and has \ufeff, so "\S" let a generator send "\x1c" as a valid prompt.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
NON_BLANK_PATTERN = "[^" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]"
N = TypeVar("N", int, float)


@dataclass(frozen=True, slots=True)
class Bounds(Generic[N]):
    """From ``minimum`` to ``maximum``, both included; what is bounded is the subclass's."""

    keywords: ClassVar[tuple[str, str]]  # its JSON Schema's names for the two
    minimum: N
    maximum: N


class Range(Bounds[float]):
    """A number from ``minimum`` to ``maximum``."""

    __slots__ = ()
    keywords = ("minimum", "maximum")


class Items(Bounds[int]):
    """A list of ``minimum`` to ``maximum`` items."""

    __slots__ = ()
    keywords = ("minItems", "maxItems")


class Length(Bounds[int]):
    """A string of ``minimum`` to ``maximum`` characters (numbers beside it in a union are not limited)."""

    __slots__ = ()
    keywords = ("minLength", "maxLength")


@dataclass(frozen=True, slots=True)
class NonBlank:
    """A string with at least one character that is not whitespace."""


@dataclass(frozen=True, slots=True)
class PromptText:
    """Counts toward MAX_PROMPT_CHARS (a setting, so the schema's maxLength is filled in by the caller)."""


@dataclass(frozen=True, slots=True)
class Describe:
    text: str


Meta = Bounds[Any] | NonBlank | PromptText | Describe
META_CLASSES = (Bounds, NonBlank, PromptText, Describe)  # Meta's, for isinstance (which takes no Bounds[Any])


def unwrap(hint: Any) -> tuple[Any, tuple[Meta, ...]]:
    """``Annotated[T, m1, m2]`` → ``(T, (m1, m2))``; anything else → ``(hint, ())``."""
    if get_origin(hint) in (NotRequired, Required):
        hint = get_args(hint)[0]
    if get_origin(hint) is Annotated:
        base, *meta = get_args(hint)
        return base, tuple(m for m in meta if isinstance(m, META_CLASSES))
    return hint, ()


def fields_of(typed_dict: type) -> dict[str, tuple[Any, tuple[Meta, ...]]]:
    """Each field of a TypedDict: its type and its limits."""
    return {name: unwrap(hint) for name, hint in get_type_hints(typed_dict, include_extras=True).items()}


def meta_of(meta: tuple[Meta, ...], kind: type[Any]) -> Any:
    return next((m for m in meta if isinstance(m, kind)), None)


def json_schema(hint: Any, *, max_prompt_chars: int, refs: dict[type, str] | None = None) -> dict[str, Any]:
    """The JSON Schema (2020-12, as OpenAPI 3.1 uses) of a type hint; ``refs`` names TypedDicts by $ref."""
    base, meta = unwrap(hint)
    refs = refs or {}
    schema = _base_schema(base, max_prompt_chars=max_prompt_chars, refs=refs)
    for item in meta:
        if isinstance(item, Bounds):
            schema.update(zip(item.keywords, (item.minimum, item.maximum), strict=True))
        elif isinstance(item, NonBlank):
            schema.update(minLength=1, pattern=NON_BLANK_PATTERN)
        elif isinstance(item, PromptText):
            schema["maxLength"] = max_prompt_chars
        elif isinstance(item, Describe):
            schema["description"] = item.text
    return schema


def _base_schema(base: Any, *, max_prompt_chars: int, refs: dict[type, str]) -> dict[str, Any]:
    def sub(hint: Any) -> dict[str, Any]:
        return json_schema(hint, max_prompt_chars=max_prompt_chars, refs=refs)

    origin = get_origin(base)
    if base is Any:
        return {}
    if base is bool:
        return {"type": "boolean"}
    if base is int:
        return {"type": "integer", "minimum": -INT_LIMIT + 1, "maximum": INT_LIMIT - 1}
    if base is float:
        return {"type": "number"}
    if base is str:
        return {"type": "string"}
    if origin is Literal:
        return {"enum": list(get_args(base))}
    if origin is list:
        return {"type": "array", "items": sub(get_args(base)[0])}
    if origin is dict:
        return {"type": "object"}
    if origin in (Union, types.UnionType):
        return {"anyOf": [sub(arg) for arg in get_args(base)]}
    if is_typeddict(base):
        if base in refs:
            return {"$ref": f"#/components/schemas/{refs[base]}"}
        return object_schema(base, max_prompt_chars=max_prompt_chars, refs=refs)
    raise TypeError(f"no JSON Schema for {base!r}")


def object_schema(typed_dict: type, *, max_prompt_chars: int, refs: dict[type, str] | None = None) -> dict[str, Any]:
    """A TypedDict as a closed object: its fields, which are required, nothing else."""
    hints = get_type_hints(typed_dict, include_extras=True)
    total = bool(getattr(typed_dict, "__total__", True))
    # Read from the hints, not __required_keys__: with postponed annotations Python 3.11 cannot
    # see NotRequired[...] when it builds the class, and counts every field as required.
    required = [
        name
        for name, hint in hints.items()
        if get_origin(hint) is Required or (total and get_origin(hint) is not NotRequired)
    ]
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            name: json_schema(hint, max_prompt_chars=max_prompt_chars, refs=refs) for name, hint in hints.items()
        },
    }
    if required:
        schema["required"] = sorted(required)
    return schema
