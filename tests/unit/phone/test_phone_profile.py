"""The profile directory: its files, their permissions, and reading it back."""

import json
import os
import stat
from pathlib import Path

import pytest
from joserfc import jwt

from idp_phone.profile import Profile, ProfileError, generate_key, is_enrolled, resolve_profile_dir
from idp_phone.proof import make_proof, public_jwk


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def _profile(directory, **changes):
    values = {
        "directory": directory,
        "server": "https://id.example.com",
        "device_id": "dev_abc",
        "device_name": "Alice's phone",
        "username": "alice",
        "key": generate_key(),
    }
    values.update(changes)
    return Profile(**values)


def test_save_creates_a_private_directory_and_files(tmp_path):
    directory = tmp_path / "deep" / "idp-phone"
    profile = _profile(directory)
    profile.save()

    assert directory.is_dir()
    assert _mode(directory) == 0o700
    assert sorted(p.name for p in directory.iterdir()) == ["device-key.pem", "device.json"]
    assert _mode(directory / "device-key.pem") == 0o600
    assert _mode(directory / "device.json") == 0o600
    assert json.loads((directory / "device.json").read_text()) == {
        "server": "https://id.example.com",
        "device_id": "dev_abc",
        "device_name": "Alice's phone",
        "username": "alice",
    }
    assert (directory / "device-key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert is_enrolled(directory)


def test_permissions_do_not_depend_on_the_umask(tmp_path):
    old = os.umask(0)
    try:
        _profile(tmp_path / "p").save()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "p") == 0o700
    assert _mode(tmp_path / "p" / "device-key.pem") == 0o600
    assert _mode(tmp_path / "p" / "device.json") == 0o600


def test_saving_over_a_loose_file_replaces_it_with_a_0600_one(tmp_path):
    directory = tmp_path / "p"
    directory.mkdir(mode=0o700)
    loose = directory / "device-key.pem"
    loose.write_text("old")
    loose.chmod(0o644)

    _profile(directory).save()

    assert _mode(loose) == 0o600
    assert loose.read_bytes() != b"old"
    # Nothing left behind by the temp-file-then-rename writes.
    assert sorted(p.name for p in directory.iterdir()) == ["device-key.pem", "device.json"]


def test_round_trip(tmp_path):
    saved = _profile(tmp_path / "p")
    saved.save()

    loaded = Profile.load(tmp_path / "p")

    assert loaded == saved  # every field but the key (compare=False)
    assert loaded.directory == tmp_path / "p"
    assert loaded.key.is_private
    assert public_jwk(loaded.key) == public_jwk(saved.key)
    assert loaded.key.as_dict(private=True)["d"] == saved.key.as_dict(private=True)["d"]
    # A proof made with the loaded key verifies with the saved key's public half.
    token = make_proof(loaded.key, "GET", "https://id.example.com/x", b"", kid=loaded.device_id)
    assert jwt.decode(token, saved.key).header["kid"] == "dev_abc"


def test_key_is_not_in_the_repr(tmp_path):
    profile = _profile(tmp_path / "p")
    assert profile.key.as_dict(private=True)["d"] not in repr(profile)


def test_load_without_profile_says_how_to_enroll(tmp_path):
    assert not is_enrolled(tmp_path)
    with pytest.raises(ProfileError, match=r"not enrolled.*idp-phone enroll"):
        Profile.load(tmp_path)


def test_load_refuses_a_key_readable_by_others(tmp_path):
    _profile(tmp_path / "p").save()
    (tmp_path / "p" / "device-key.pem").chmod(0o644)
    with pytest.raises(ProfileError, match="chmod 600"):
        Profile.load(tmp_path / "p")


def test_load_reports_a_missing_key_and_a_malformed_device_file(tmp_path):
    _profile(tmp_path / "p").save()
    (tmp_path / "p" / "device-key.pem").unlink()
    with pytest.raises(ProfileError, match=r"device key .* is missing"):
        Profile.load(tmp_path / "p")

    (tmp_path / "p" / "device.json").write_text('{"server": "https://id.example.com"}')
    with pytest.raises(ProfileError, match="malformed"):
        Profile.load(tmp_path / "p")

    (tmp_path / "p" / "device.json").write_text("not json")
    with pytest.raises(ProfileError, match="cannot read"):
        Profile.load(tmp_path / "p")


def test_load_refuses_a_key_that_is_not_a_p256_private_key(tmp_path):
    _profile(tmp_path / "p").save()
    key_path = tmp_path / "p" / "device-key.pem"
    key_path.write_bytes(generate_key().as_pem(private=False))
    with pytest.raises(ProfileError, match="not a private EC P-256 key"):
        Profile.load(tmp_path / "p")
    key_path.write_text("garbage")
    with pytest.raises(ProfileError, match="cannot read the device key"):
        Profile.load(tmp_path / "p")


def test_default_directory_is_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_profile_dir() == tmp_path / ".config" / "idp-phone"
    assert resolve_profile_dir("~/other") == tmp_path / "other"
    assert resolve_profile_dir(Path("/x/y")) == Path("/x/y")
