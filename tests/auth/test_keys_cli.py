"""``python -m chat.keys`` on the local SQLite store, run as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servicekit.state.factory import StateSettings, key_store
from servicekit.state.keys import hash_key

from tests.auth.helpers import keys
from tests.servers import REPO


def test_add_prints_the_key_last_and_stores_only_its_hash(state_settings: StateSettings) -> None:
    env = {**os.environ, "STATE_DIR": state_settings.directory}
    done = subprocess.run(
        [sys.executable, "-m", "chat.keys", "add", "alice", "--max-waiting", "3"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("oc-")
    assert len(key) >= 3 + 43  # 256 random bits
    stored = b"".join(path.read_bytes() for path in Path(state_settings.directory).iterdir() if path.is_file())
    assert key.encode() not in stored


async def test_list_shows_names_never_keys(state_settings: StateSettings) -> None:
    code, out = keys(state_settings, "add", "alice", "--weight", "3")
    key = out.strip().splitlines()[-1]
    keys(state_settings, "add", "bob", "--models", "a,b")
    code, listing = keys(state_settings, "list")
    assert code == 0
    lines = listing.strip().splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["alice", "bob"]
    assert key not in listing
    assert hash_key(key) not in listing
    record = await key_store(state_settings).lookup(hash_key(key))
    assert record is not None
    assert (record["name"], record["weight"], record["revoked_at"]) == ("alice", 3, None)


def test_revoke_and_refusals(state_settings: StateSettings) -> None:
    keys(state_settings, "add", "alice")
    assert keys(state_settings, "add", "alice")[0] == 1
    assert keys(state_settings, "revoke", "nobody")[0] == 1
    assert keys(state_settings, "revoke", "alice")[0] == 0
    assert keys(state_settings, "revoke", "alice")[0] == 1
