"""The instance folder and the files that hold secrets: the secret key file and the
SQLite database (with its ``-wal`` and ``-shm``). They are made private (folder 0700,
files 0600) whatever the umask, and the IdP refuses to start when one of them is open
to the group or other users: any local user could otherwise read the signing keys.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from idp.config import ConfigError


def _mode_problem(path: Path, folder: bool) -> str | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        wanted = "700" if folder else "600"
        what = "folder" if folder else "file"
        return (
            f"the {what} {path} is open to other users (mode {mode:o}): it holds secrets "
            f"of the IdP; run chmod {wanted} {path}"
        )
    return None


def check_private(path: Path, *, folder: bool = False) -> None:
    """Refuse to start when ``path`` (if it exists) is open to the group or other users
    (any of their permission bits: a group-writable secret file could be replaced)."""
    if path.exists() and (problem := _mode_problem(path, folder)):
        raise ConfigError(problem)


def make_private_folder(path: Path) -> None:
    """Create ``path`` (and its parents) if missing; the folder itself is made 0700."""
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # whatever the umask
    check_private(path, folder=True)


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite ``database_url`` (``None`` for PostgreSQL or ``:memory:``)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def check_sqlite_files(database_url: str) -> None:
    """Refuse a SQLite database (or its ``-wal``/``-shm`` files) that other users can read."""
    if (path := sqlite_path(database_url)) is None:
        return
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        check_private(file)


def create_sqlite_file(database_url: str) -> None:
    """Create a SQLite database's file 0600 (and its folder 0700) before SQLite opens it:
    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode, and would
    otherwise make all three with the umask's (0644 by default)."""
    if (path := sqlite_path(database_url)) is None:
        return
    if not path.parent.exists():
        make_private_folder(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        os.fchmod(fd, 0o600)
        os.close(fd)
    check_sqlite_files(database_url)


def instance_secret(instance_path: Path) -> str:
    """A random secret kept in the instance folder (0700), made on first start (0600)."""
    make_private_folder(instance_path)
    path = instance_path / "secret_key"
    if path.exists():
        check_private(path)
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    # Write a private temporary file, then link it into place: a process starting
    # at the same moment sees either no file or the whole secret, never half of it.
    tmp = instance_path / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    try:
        os.link(tmp, path)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    finally:
        tmp.unlink()
    return secret
