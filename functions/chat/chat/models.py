"""Which models a request may name: ALLOWED_MODELS, matched as Ollama matches names.

Ollama treats ``tinyllama`` and ``tinyllama:latest`` as one model and lists the latter in
``/api/tags``; a client that picks a name from that list must be able to use it here, so names
are compared with their tag (``:latest`` when none is given). Requests are forwarded under the
spelling in ALLOWED_MODELS.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from servicekit.errors import InvalidRequest, ModelNotFound


def tagged(name: str) -> str:
    """``name`` with its tag; ``:latest`` when it has none (a registry port is not a tag)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class _Missing:
    """A request that names no model (unlike one that names ``null``, which is refused)."""


MISSING: Any = _Missing()


class Models:
    def __init__(self, default: str, allowed: Iterable[str]) -> None:
        self.default = default
        self.allowed = tuple(allowed)
        self._by_tag = {tagged(name): name for name in self.allowed}

    def allowed_name(self, name: str) -> str | None:
        """The ALLOWED_MODELS spelling of ``name``, or None when it is not allowed."""
        return self._by_tag.get(tagged(name))

    def choose(self, requested: Any = MISSING, *, listed: Iterable[str] | None = None) -> str:
        """The requested model (the default when none is named), if it is allowed; raise otherwise.

        ``listed``: the models to name in the refusal (a key's own list, not every allowed model).
        """
        model = self.default if requested is MISSING else requested
        if not isinstance(model, str) or not model:
            raise InvalidRequest("'model' must be a non-empty string.")
        name = self.allowed_name(model)
        if name is None:
            shown = list(self.allowed if listed is None else listed)
            allowed = ", ".join(shown) if shown else "none of the models served here"
            raise ModelNotFound(f"Model '{model}' is not available here; allowed: {allowed}.")
        return name
