"""The phone's enrolled identity, kept in a directory.

A profile directory (``~/.config/idp-phone`` unless ``--profile DIR`` says otherwise) holds:

- ``device.json``: ``{"server", "device_id", "device_name", "username"}``;
- ``device-key.pem``: the device's private EC P-256 key (PKCS#8 PEM), mode 0600.

The directory is created with mode 0700. Every file is written atomically (a temporary file
in the same directory, then ``os.replace``) and created with ``os.open(..., 0o600)`` so the
key is never readable by anyone else, not even for a moment.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from joserfc.errors import JoseError
from joserfc.jwk import ECKey

DEFAULT_PROFILE_DIR = Path("~/.config/idp-phone")
"""Where the profile lives when ``--profile`` is not given (``~`` is expanded on use)."""

DEVICE_FILE = "device.json"
"""The name of the file holding the enrollment facts."""

KEY_FILE = "device-key.pem"
"""The name of the file holding the device's private key."""

DIR_MODE = 0o700
FILE_MODE = 0o600


class ProfileError(Exception):
    """The profile is missing, unreadable, malformed or cannot be written."""


def generate_key() -> ECKey:
    """Generate a new private EC P-256 device key."""
    return ECKey.generate_key("P-256", private=True)


def resolve_profile_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """Return the profile directory: ``directory`` if given, else the default, ``~`` expanded."""
    return Path(directory if directory is not None else DEFAULT_PROFILE_DIR).expanduser()


def is_enrolled(directory: str | os.PathLike[str] | None = None) -> bool:
    """Tell whether a profile (its ``device.json``) exists in ``directory``."""
    return (resolve_profile_dir(directory) / DEVICE_FILE).exists()


@dataclass(frozen=True)
class Profile:
    """An enrolled device: which IdP, which device and user, and the device's private key."""

    directory: Path
    server: str
    device_id: str
    device_name: str
    username: str
    key: ECKey = field(repr=False, compare=False)

    @property
    def device_path(self) -> Path:
        """The path of ``device.json``."""
        return self.directory / DEVICE_FILE

    @property
    def key_path(self) -> Path:
        """The path of the private key file."""
        return self.directory / KEY_FILE

    def save(self) -> None:
        """Write the profile: the directory (0700 if created), the key (0600), device.json."""
        directory = self.directory
        if not directory.exists():
            try:
                directory.mkdir(mode=DIR_MODE, parents=True)
                os.chmod(directory, DIR_MODE)  # exactly 0700, whatever the umask
            except OSError as exc:
                raise ProfileError(
                    f"cannot create the profile directory {directory}: {exc}"
                ) from exc
        elif not directory.is_dir():
            raise ProfileError(f"{directory} is not a directory")
        device = {
            "server": self.server,
            "device_id": self.device_id,
            "device_name": self.device_name,
            "username": self.username,
        }
        # The key first: device.json is what makes the directory count as enrolled.
        _write_atomically(self.key_path, self.key.as_pem(private=True))
        _write_atomically(self.device_path, (json.dumps(device, indent=2) + "\n").encode())

    @classmethod
    def load(cls, directory: str | os.PathLike[str] | None = None) -> Profile:
        """Read the profile in ``directory`` (the default directory if ``None``)."""
        path = resolve_profile_dir(directory)
        device_path = path / DEVICE_FILE
        key_path = path / KEY_FILE
        if not device_path.exists():
            raise ProfileError(
                f"this device is not enrolled (no {DEVICE_FILE} in {path}); "
                "run: idp-phone enroll --server URL --username NAME --password-stdin"
            )
        try:
            device = json.loads(device_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ProfileError(f"cannot read {device_path}: {exc}") from exc
        names = ("server", "device_id", "device_name", "username")
        if not isinstance(device, dict) or not all(
            isinstance(device.get(name), str) and device[name] for name in names
        ):
            raise ProfileError(f"{device_path} is malformed: it needs the strings {names}")
        key = _read_key(key_path)
        return cls(
            directory=path,
            server=device["server"],
            device_id=device["device_id"],
            device_name=device["device_name"],
            username=device["username"],
            key=key,
        )


def _read_key(key_path: Path) -> ECKey:
    try:
        mode = key_path.stat().st_mode
    except FileNotFoundError as exc:
        raise ProfileError(f"the device key {key_path} is missing") from exc
    except OSError as exc:
        raise ProfileError(f"cannot read the device key {key_path}: {exc}") from exc
    if stat.S_IMODE(mode) & 0o077:
        raise ProfileError(
            f"the device key {key_path} is accessible by other users "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {key_path}"
        )
    try:
        key = ECKey.import_key(key_path.read_bytes())
    except (OSError, ValueError, JoseError) as exc:
        raise ProfileError(f"cannot read the device key {key_path}: {exc}") from exc
    if key.curve_name != "P-256" or not key.is_private:
        raise ProfileError(f"{key_path} is not a private EC P-256 key")
    return key


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 through a temporary file and os.replace."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # exactly 0600, whatever the umask
            with os.fdopen(fd, "wb") as handle:
                fd = -1  # the file object owns it now
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            if fd != -1:
                os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ProfileError(f"cannot write {path}: {exc}") from exc
