"""STATE_DIR is private: created 0700, files 0600, links never followed, a shared directory refused."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from servicekit.config import ConfigError
from servicekit.state.factory import StateSettings
from servicekit.state.statedir import create_private_file, default_state_dir, open_private, private_dir

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_default_follows_xdg() -> None:
    assert default_state_dir({"XDG_STATE_HOME": "/srv/xdg", "HOME": "/home/a"}) == "/srv/xdg/serverless-ollama-chat"
    expected = "/home/a/.local/state/serverless-ollama-chat"
    assert default_state_dir({"HOME": "/home/a"}) == expected
    assert default_state_dir({"XDG_STATE_HOME": "relative/ignored", "HOME": "/home/a"}) == expected


def test_settings_read_state_dir_and_the_table() -> None:
    assert StateSettings.from_env({"STATE_DIR": "/srv/state", "JOBS_TABLE": "t"}) == StateSettings("t", "/srv/state")
    assert StateSettings.from_env({"HOME": "/home/a"}).directory == "/home/a/.local/state/serverless-ollama-chat"


def test_created_0700_with_its_parents_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        made = private_dir(tmp_path / "a" / "b" / "state")
    finally:
        os.umask(old)
    assert made == tmp_path / "a" / "b" / "state"
    assert mode(made) == 0o700
    assert mode(tmp_path / "a") == 0o700  # parents made here are private too
    assert private_dir(made) == made  # an existing private directory is fine


@pytest.mark.parametrize("loose", [0o770, 0o707, 0o777, 0o720])
def test_writable_by_others_is_refused(tmp_path: Path, loose: int) -> None:
    shared = tmp_path / "state"
    shared.mkdir()
    shared.chmod(loose)
    with pytest.raises(ConfigError, match=r"STATE_DIR .* writable by other users"):
        private_dir(shared)


def test_readable_by_others_is_allowed(tmp_path: Path) -> None:
    readable = tmp_path / "state"
    readable.mkdir()
    readable.chmod(0o755)
    assert private_dir(readable) == readable


def test_a_symlink_is_refused_even_to_a_private_directory(tmp_path: Path) -> None:
    real = private_dir(tmp_path / "real")
    link = tmp_path / "state"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match=r"STATE_DIR .* is a symlink"):
        private_dir(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "state"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match=rf"STATE_DIR .* owned by uid {NOBODY}"):
        private_dir(theirs)


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(ConfigError, match=r"STATE_DIR .* not a directory"):
        private_dir(tmp_path / "state")


def test_files_are_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        create_private_file(tmp_path / "f")
        os.close(open_private(tmp_path / "g"))
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == 0o600
    assert mode(tmp_path / "g") == 0o600


def test_a_loose_existing_file_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    (tmp_path / "f").chmod(0o666)
    create_private_file(tmp_path / "f")
    assert mode(tmp_path / "f") == 0o600


def test_a_planted_symlink_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    target.chmod(0o644)
    (tmp_path / "planted").symlink_to(target)
    with pytest.raises(OSError, match="symbolic links") as raised:
        open_private(tmp_path / "planted")
    assert raised.value.errno == errno.ELOOP
    with pytest.raises(ConfigError, match="STATE_DIR file"):
        create_private_file(tmp_path / "planted")
    assert target.read_text() == "precious"
    assert mode(target) == 0o644  # neither opened nor re-moded through the link


def test_a_state_dir_that_cannot_be_created_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match=r"STATE_DIR .* cannot be created: Not a directory"):
        private_dir(tmp_path / "a-file" / "state")


def test_a_state_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = private_dir(tmp_path / "state") / "state.db"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="is not a regular file"):
        create_private_file(fifo)
