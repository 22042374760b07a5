"""Keys for tests, made the way users make them: through ``python -m chat.keys``."""

from __future__ import annotations

import io

from chat.keys import main as keys_cli
from servicekit.state.factory import StateSettings


def keys(state: StateSettings, *argv: str) -> tuple[int, str]:
    """Run ``python -m chat.keys ARGV`` in-process against this state: exit code and stdout."""
    out = io.StringIO()
    env = {"STATE_DIR": state.directory, "JOBS_TABLE": state.table}
    code = keys_cli(list(argv), out=out, env=env)
    return code, out.getvalue()


def add_key(state: StateSettings, name: str, *options: str) -> str:
    """``python -m chat.keys add NAME ...``; the new key is the last line of its output."""
    code, out = keys(state, "add", name, *options)
    assert code == 0, out
    return out.strip().splitlines()[-1]
