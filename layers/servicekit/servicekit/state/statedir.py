"""``STATE_DIR``: the private directory that holds the service's state on this host.

Default ``$XDG_STATE_HOME/serverless-ollama-chat``, else ``~/.local/state/serverless-ollama-chat``.
It is created ``0700`` (parents as needed); an existing one is used only if it is a real
directory (not a symlink), owned by this user and writable by nobody else — otherwise another
local user could swap the database or plant links in it. Files in it are created ``0600`` and
opened without following a link (:func:`open_private`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path

from servicekit.config import ConfigError

APP_NAME = "serverless-ollama-chat"
DIR_MODE = 0o700
FILE_MODE = 0o600


def default_state_dir(env: Mapping[str, str]) -> str:
    xdg = env.get("XDG_STATE_HOME", "").strip()
    # The XDG spec: a relative XDG_STATE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return str(base / APP_NAME)


def private_dir(directory: str | Path) -> Path:
    """Create ``directory`` 0700 (parents as needed), or check that an existing one is private.

    Raises ``ConfigError`` naming ``STATE_DIR`` when it is a symlink, not a directory, owned by
    another user, or writable by group or others.
    """
    path = Path(directory)
    if not path.is_absolute():
        path = Path.cwd() / path
    missing = [path, *(parent for parent in path.parents if not os.path.lexists(parent))]
    try:
        # One by one, top down: os.makedirs would give the parents it makes the default mode.
        for directory in reversed(missing):
            with suppress(FileExistsError):  # another process made it first
                os.mkdir(directory, DIR_MODE)  # the umask can only remove bits
    except OSError as exc:
        raise ConfigError(f"STATE_DIR {str(path)!r} cannot be created: {exc.strerror}") from exc
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"STATE_DIR {str(path)!r} is a symlink; point STATE_DIR at the real directory")
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"STATE_DIR {str(path)!r} is not a directory")
    if info.st_uid != os.geteuid():
        raise ConfigError(f"STATE_DIR {str(path)!r} is owned by uid {info.st_uid}, not by this user ({os.geteuid()})")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"STATE_DIR {str(path)!r} is writable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run: chmod 700 {path}"
        )
    return path


def open_private(path: str | Path, flags: int = os.O_RDWR) -> int:
    """Open (creating it ``0600`` if missing) a file in STATE_DIR, refusing to follow a symlink.

    Returns the file descriptor; ``O_NOFOLLOW`` makes a planted link fail with ``ELOOP``.
    """
    return os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)


def create_private_file(path: str | Path) -> None:
    """Make sure ``path`` exists as a regular ``0600`` file of ours (never following a link)."""
    try:
        fd = open_private(path)
    except OSError as exc:
        raise ConfigError(f"STATE_DIR file {str(path)!r} cannot be opened safely: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"STATE_DIR file {str(path)!r} is not a regular file")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)  # an older file made under a looser umask
    finally:
        os.close(fd)
