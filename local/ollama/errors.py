"""The model server's one error type, answered as Ollama does: ``{"error": "..."}`` with a status."""

from __future__ import annotations


class BadRequest(Exception):
    """A request the model server refuses; ``status`` is the HTTP status (400 unless said)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
