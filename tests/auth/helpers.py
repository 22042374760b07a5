"""Keys for tests, made the way users make them: through ``python -m chat.keys``."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

from chat.keys import main as keys_cli
from servicekit.state.factory import StateSettings


def keys(state: StateSettings, *argv: str) -> tuple[int, str]:
    """Run ``python -m chat.keys ARGV`` in-process against this state: exit code and stdout."""
    out = io.StringIO()
    env = {"STATE_DIR": state.directory, "JOBS_TABLE": state.table}
    # In a thread of its own: the CLI runs its own event loop, and tests call this from theirs.
    with ThreadPoolExecutor(max_workers=1) as thread:
        code = thread.submit(keys_cli, list(argv), out, env).result()
    return code, out.getvalue()


def add_key(state: StateSettings, name: str, *options: str) -> str:
    """``python -m chat.keys add NAME ...``; the new key is the last line of its output."""
    code, out = keys(state, "add", name, *options)
    assert code == 0, out
    return out.strip().splitlines()[-1]
