"""Who is asking: the caller chat authenticated, carried to the runner in headers.

Chat decides the caller (from an API key, or from the client address when auth is off) and
stores it in the request scope; every call it makes to the runner carries it in the
``X-Caller-*`` headers below. The runner believes those headers only from chat: with a valid
``RUNNER_TOKEN``, or on AWS where IAM lets only chat invoke it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

_STATE_KEY = "caller"
NAME_HEADER = "x-caller-name"
WEIGHT_HEADER = "x-caller-weight"
MAX_WAITING_HEADER = "x-caller-max-waiting"
# "1" when the name is an API key's (bounded: metrics may use it as a label), absent for an address.
KEYED_HEADER = "x-caller-keyed"
# A request that reaches the runner without a caller (a direct call on loopback, say).
ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # a key's name, or the client address when auth is off: bounded, never raw input
    weight: int = 1  # turns per round in the fair queue
    max_waiting: int | None = None  # None: the deployment's MAX_WAITING_PER_CALLER
    models: tuple[str, ...] | None = None  # None: every allowed model
    keyed: bool = False  # authenticated by an API key (not by address)

    def headers(self) -> dict[str, str]:
        """What chat tells the runner about this caller."""
        headers = {NAME_HEADER: self.name, WEIGHT_HEADER: str(self.weight)}
        if self.max_waiting is not None:
            headers[MAX_WAITING_HEADER] = str(self.max_waiting)
        if self.keyed:
            headers[KEYED_HEADER] = "1"
        return headers


def _positive(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    number = int(value)
    return number if 0 < number < 1_000_000 else None


def caller_from_headers(headers: Mapping[str, str]) -> Caller:
    """The caller chat named in a runner request (only call this once the request is trusted)."""
    name = headers.get(NAME_HEADER, "").strip()[:128] or ANONYMOUS
    return Caller(
        name=name,
        weight=_positive(headers.get(WEIGHT_HEADER)) or 1,
        max_waiting=_positive(headers.get(MAX_WAITING_HEADER)),
        keyed=headers.get(KEYED_HEADER) == "1",
    )


def set_caller(scope: Scope, caller: Caller) -> None:
    state: dict[str, Any] = scope.setdefault("state", {})
    state[_STATE_KEY] = caller


def caller_or_none(scope: Scope) -> Caller | None:
    """The caller, if an auth layer has stored one (logs and metrics: public routes have none)."""
    caller = scope.get("state", {}).get(_STATE_KEY)
    return caller if isinstance(caller, Caller) else None


def caller_of(scope: Scope) -> Caller:
    """The caller an auth layer stored for this request; a route without one is a wiring bug."""
    caller = scope.get("state", {}).get(_STATE_KEY)
    if not isinstance(caller, Caller):
        raise RuntimeError("this route is not behind an auth layer")
    return caller
