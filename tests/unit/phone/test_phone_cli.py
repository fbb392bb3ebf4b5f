"""idp-phone's local behaviour: SOURCE handling and refusals that happen before any request.

No server is involved. Where a test asserts that nothing was sent, the profile's server is a
real listening socket that never answers, and the test checks no connection reached it.
"""

import io
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import qrcode

from idp_phone.api import NotASignInCodeError, PhoneClient, check_login_qr, normalize_server
from idp_phone.cli import (
    UsageError,
    clean,
    describe_login_request,
    describe_pending_enrollment,
    enrolled_via,
    main,
    read_source,
)
from idp_phone.profile import Profile, ProfileError, generate_key


class Tripwire:
    """A TCP listener standing in for the server's address; it only records connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def was_contacted(self):
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


@pytest.fixture
def server():
    tripwire = Tripwire()
    yield tripwire
    tripwire.sock.close()


@pytest.fixture
def profile_dir(tmp_path, server):
    directory = tmp_path / "profile"
    Profile(
        directory=directory,
        server=server.url,
        device_id="dev_test",
        device_name="test phone",
        username="alice",
        key=generate_key(),
    ).save()
    return directory


@pytest.fixture
def no_tty(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


def _qr_png(path, text):
    qrcode.make(text).save(path)
    return path


# SOURCE: URL text or image file ---------------------------------------------------------


def test_source_that_is_a_url_is_used_as_is():
    assert read_source("https://id.example.com/q/abc") == "https://id.example.com/q/abc"
    assert read_source(" http://localhost:8000/q/abc\n") == "http://localhost:8000/q/abc"
    assert read_source("HTTPS://ID.EXAMPLE.COM/q/abc") == "HTTPS://ID.EXAMPLE.COM/q/abc"


def test_source_that_is_a_file_is_decoded(tmp_path):
    path = _qr_png(tmp_path / "shot.png", "https://id.example.com/q/from-the-image")
    assert read_source(str(path)) == "https://id.example.com/q/from-the-image"


def test_source_that_is_neither(tmp_path):
    with pytest.raises(UsageError, match=r"neither the QR code's URL .* nor an existing image"):
        read_source(str(tmp_path / "nope.png"))
    with pytest.raises(UsageError, match="neither"):
        read_source("id.example.com/q/abc")


# The local "is this our QR code?" check --------------------------------------------------


@pytest.mark.parametrize(
    ("server", "text", "request_id"),
    [
        ("https://id.example.com", "https://id.example.com/q/abc-DEF_123", "abc-DEF_123"),
        ("https://id.example.com", "  https://id.example.com/q/abc\n", "abc"),
        ("https://id.example.com", "HTTPS://ID.Example.COM/q/abc", "abc"),
        ("http://localhost:8000", "http://localhost:8000/q/r1", "r1"),
        ("https://example.com/idp", "https://example.com/idp/q/r1", "r1"),
    ],
)
def test_our_sign_in_codes_are_accepted(server, text, request_id):
    assert check_login_qr(server, text) == request_id


@pytest.mark.parametrize(
    "text",
    [
        "https://evil.example/q/abc",  # another host
        "http://id.example.com/q/abc",  # another scheme
        "https://id.example.com:8443/q/abc",  # another port
        "https://id.example.com.evil.example/q/abc",  # a look-alike host
        "https://id.example.com@evil.example/q/abc",  # credentials trick
        "https://id.example.com/q/",  # no id
        "https://id.example.com/q/abc/def",  # extra path
        "https://id.example.com/q/abc?next=https://evil.example",  # query
        "https://id.example.com/q/abc#x",  # fragment
        "https://id.example.com/x/q/abc",  # another path
        "https://id.example.com/Q/abc",  # path is case-sensitive
        "WIFI:S:home;T:WPA;P:secret;;",  # not a URL at all
    ],
)
def test_other_codes_are_refused(text):
    with pytest.raises(NotASignInCodeError, match=r"^This QR code is not a sign-in code for "):
        check_login_qr("https://id.example.com", text)


def test_issuer_path_is_part_of_the_check():
    with pytest.raises(NotASignInCodeError):
        check_login_qr("https://example.com/idp", "https://example.com/q/abc")


def test_normalize_server():
    assert normalize_server("HTTPS://ID.Example.com/") == "https://id.example.com"
    assert normalize_server("https://example.com/idp/") == "https://example.com/idp"
    for bad in (
        "ftp://id.example.com",
        "id.example.com",
        "https://u:p@id.example.com",
        "https://x/?a",
    ):
        with pytest.raises(ValueError):
            normalize_server(bad)


def test_client_scan_refuses_a_foreign_code_without_sending(profile_dir, server):
    client = PhoneClient(profile_dir)
    with pytest.raises(NotASignInCodeError, match=f"not a sign-in code for {server.url}$"):
        client.scan("https://evil.example/q/abc")
    assert not server.was_contacted()


# The scan command's refusals ----------------------------------------------------------


def test_scan_refuses_a_foreign_url(profile_dir, server, capsys):
    code = main(["--profile", str(profile_dir), "scan", "https://evil.example/q/abc", "--approve"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"This QR code is not a sign-in code for {server.url}" in err
    assert "https://evil.example/q/abc" in err
    assert "Traceback" not in err
    assert not server.was_contacted()


def test_scan_decodes_an_image_and_refuses_a_foreign_code(profile_dir, server, tmp_path, capsys):
    image = _qr_png(tmp_path / "photo.png", "https://evil.example/q/from-a-photo")
    code = main(["--profile", str(profile_dir), "scan", str(image), "--deny", "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert f"not a sign-in code for {server.url}" in err
    assert "https://evil.example/q/from-a-photo" in err  # it was read from the image
    assert not server.was_contacted()


def test_scan_of_an_image_of_our_code_gets_past_the_local_checks(
    profile_dir, server, tmp_path, capsys, no_tty
):
    # Our code, but no --approve/--deny and no terminal: refused locally (exit 2), which
    # shows that the image decoded to a code of this server.
    image = _qr_png(tmp_path / "ours.png", f"{server.url}/q/abc123")
    code = main(["--profile", str(profile_dir), "scan", str(image)])
    err = capsys.readouterr().err
    assert code == 2
    assert "stdin is not a terminal" in err
    assert "--approve or --deny" in err
    assert not server.was_contacted()


def test_scan_without_terminal_and_without_decision_is_refused(profile_dir, server, capsys, no_tty):
    code = main(["--profile", str(profile_dir), "scan", f"{server.url}/q/abc123"])
    assert code == 2
    assert "stdin is not a terminal" in capsys.readouterr().err
    assert not server.was_contacted()


def test_scan_of_an_image_without_qr_code(profile_dir, server, tmp_path, capsys):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    code = main(["--profile", str(profile_dir), "scan", str(blank), "--approve"])
    assert code == 2
    assert capsys.readouterr().err == f"error: no QR code found in {blank}\n"
    assert not server.was_contacted()


def test_scan_of_a_file_that_is_not_an_image(profile_dir, server, tmp_path, capsys):
    text_file = tmp_path / "code.txt"
    text_file.write_text(f"{server.url}/q/abc\n")
    code = main(["--profile", str(profile_dir), "scan", str(text_file), "--approve"])
    assert code == 2
    assert "is not an image" in capsys.readouterr().err
    assert not server.was_contacted()


def test_scan_of_a_missing_file(profile_dir, server, tmp_path, capsys):
    code = main(["--profile", str(profile_dir), "scan", str(tmp_path / "x.png"), "--approve"])
    assert code == 2
    assert "neither the QR code's URL" in capsys.readouterr().err
    assert not server.was_contacted()


def test_scan_without_profile(tmp_path, capsys):
    code = main(["--profile", str(tmp_path / "none"), "scan", "https://x/q/a", "--approve"])
    err = capsys.readouterr().err
    assert code == 2
    assert "not enrolled" in err
    assert "idp-phone enroll" in err


def test_approve_and_deny_together_is_a_usage_error(profile_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--profile", str(profile_dir), "scan", "https://x/q/a", "--approve", "--deny"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# enroll and whoami without a server ---------------------------------------------------


def test_enroll_without_password_on_stdin(tmp_path, server, capsys, no_tty):
    directory = tmp_path / "new"
    argv = ["--profile", str(directory), "enroll", "--server", server.url, "--username", "alice"]
    code = main([*argv, "--password-stdin"])
    assert code == 2
    assert "no password given on stdin" in capsys.readouterr().err
    assert not directory.exists()
    assert not server.was_contacted()


def test_enroll_requires_password_stdin(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--profile", str(tmp_path), "enroll", "--server", "https://x", "--username", "a"])
    assert exit_info.value.code == 2
    assert "--password-stdin" in capsys.readouterr().err


def test_enroll_refuses_a_bad_server_url(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("secret\n"))
    argv = ["--profile", str(tmp_path / "p"), "enroll", "--server", "ftp://id.example.com"]
    code = main([*argv, "--username", "alice", "--password-stdin"])
    assert code == 2
    assert "http:// or https://" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_enroll_refuses_to_overwrite_an_enrolled_profile(profile_dir, server, capsys, monkeypatch):
    key_before = (profile_dir / "device-key.pem").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.StringIO("secret\n"))
    argv = ["--profile", str(profile_dir), "enroll", "--server", server.url, "--username", "bob"]
    code = main([*argv, "--password-stdin"])
    assert code == 2
    assert "already holds an enrolled device" in capsys.readouterr().err
    assert sys.stdin.read() == "secret\n"  # refused before asking for the password
    assert (profile_dir / "device-key.pem").read_bytes() == key_before
    assert not server.was_contacted()


def test_client_enroll_refuses_to_overwrite_an_enrolled_profile(profile_dir, server):
    key_before = (profile_dir / "device-key.pem").read_bytes()
    with pytest.raises(ProfileError, match="already holds an enrolled device"):
        PhoneClient(profile_dir).enroll(server.url, "bob", "secret", "bob's phone")
    assert (profile_dir / "device-key.pem").read_bytes() == key_before
    assert not server.was_contacted()


def test_whoami_without_profile(tmp_path, capsys):
    assert main(["--profile", str(tmp_path), "whoami"]) == 2
    assert "not enrolled" in capsys.readouterr().err


def test_unreachable_server_is_a_clear_message_not_a_traceback(tmp_path):
    # A port with nothing listening: the connection is refused for real.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server_url = f"http://127.0.0.1:{port}"
    Profile(
        directory=tmp_path / "p",
        server=server_url,
        device_id="dev_test",
        device_name="test phone",
        username="alice",
        key=generate_key(),
    ).save()
    result = subprocess.run(
        [sys.executable, "-m", "idp_phone.cli", "--profile", str(tmp_path / "p"), "whoami"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == f"error: cannot reach {server_url}: connection refused\n"
    assert result.stdout == ""


# What the user sees before deciding ---------------------------------------------------

VIEW = {
    "id": "lr_1",
    "status": "scanned",
    "client": {"client_id": "c1", "name": "Demo RP", "redirect_host": "localhost:8001"},
    "scopes": [
        {"name": "openid", "description": "Sign you in with your account identifier"},
        {"name": "profile", "description": "Your name and username"},
        {"name": "email", "description": "Your email address"},
    ],
    "browser": {"ip": "127.0.0.1", "user_agent": "Mozilla/5.0 (X11)", "summary": "Chrome on Linux"},
    "created_at": "2026-11-25T10:00:00Z",
    "expires_at": "2026-11-25T10:02:00Z",
}


def test_the_request_is_described_in_full():
    now = datetime(2026, 11, 25, 10, 0, 15, tzinfo=UTC)
    text = describe_login_request(VIEW, account="alice at https://id.example.com", now=now)
    lines = text.splitlines()
    assert lines[0] == "Sign-in request to Demo RP"
    assert "  Account:       alice at https://id.example.com" in lines
    assert "  Application:   Demo RP" in lines
    assert "  Returns to:    localhost:8001" in lines
    assert "    - openid: Sign you in with your account identifier" in lines
    assert "    - profile: Your name and username" in lines
    assert "    - email: Your email address" in lines
    assert "  Browser:       Chrome on Linux" in lines
    assert "  IP address:    127.0.0.1" in lines
    assert "  User agent:    Mozilla/5.0 (X11)" in lines
    requested = next(line for line in lines if line.startswith("  Requested:"))
    expires = next(line for line in lines if line.startswith("  Expires:"))
    local_created = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC).astimezone()
    assert requested == f"  Requested:     {local_created:%Y-%m-%d %H:%M:%S %Z} (15 s ago)"
    assert expires.endswith("(in 1 min 45 s)")
    later = datetime(2026, 11, 25, 10, 3, 0, tzinfo=UTC)
    text = describe_login_request(VIEW, account="alice", now=later)
    assert "(expired 1 min 0 s ago)" in text


def test_server_text_cannot_smuggle_terminal_escapes():
    hostile = {
        **VIEW,
        "client": {"name": "Demo\x1b[2K\rYour Bank", "redirect_host": "evil\u202eexample"},
    }
    text = describe_login_request(hostile, account="alice", now=datetime.now(UTC))
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "  Application:   Demo\\x1b[2K\\rYour Bank" in text.splitlines()
    assert clean(None) == "(unknown)"
    assert clean("x" * 500, 10) == "x" * 9 + "…"


NEW_PHONE = {
    "id": "abc",
    "status": "pending",
    "device_name": "Pixel 9",
    "created_at": "2026-11-25T10:00:00Z",
    "expires_at": "2026-11-25T10:10:00Z",
    "from": {"ip": "198.51.100.7", "location": "Lyon, France", "summary": "Chrome on Android"},
    "proximity": {"verdict": "different_country", "message": "(the server's words)"},
}


def test_a_new_phone_is_described_before_it_is_approved():
    now = datetime(2026, 11, 25, 10, 1, 0, tzinfo=UTC)
    lines = describe_pending_enrollment(NEW_PHONE, account="alice", now=now).splitlines()
    assert lines[0] == "A new phone wants to be set up as yours: Pixel 9"
    assert lines[1] == "  !! The new phone is in another country than this phone."
    assert "  IP address:    198.51.100.7" in lines
    assert "  Location:      Lyon, France (approximate)" in lines
    assert "  App:           Chrome on Android" in lines
    assert lines[-1].startswith("  Approve only if this is your phone, in your hand")
    same = {**NEW_PHONE, "proximity": {"verdict": "same_network"}, "from": {"ip": "192.0.2.1"}}
    text = describe_pending_enrollment(same, account="alice", now=now)
    assert "  The new phone is on the same network as this phone." in text.splitlines()
    assert "Location" not in text


def test_a_new_phones_name_cannot_smuggle_terminal_escapes():
    hostile = {**NEW_PHONE, "device_name": "Pixel\x1b[2K\rAlice's old phone\u202e"}
    text = describe_pending_enrollment(hostile, account="alice", now=datetime.now(UTC))
    assert "\x1b" not in text and "\u202e" not in text
    assert "  Its name:      Pixel\\x1b[2K\\rAlice's old phone\\u202e" in text.splitlines()


@pytest.mark.parametrize(
    ("via", "words"),
    [
        ("password", "enrolled with the password"),
        ("invitation", "enrolled with an invitation"),
        ("device:dev_abc", "approved by dev_abc"),
        (None, "enrolled (how: not recorded)"),
    ],
)
def test_how_a_phone_was_enrolled_in_words(via, words):
    assert enrolled_via(via) == words


def test_help_runs_as_a_console_script():
    script = Path(sys.executable).with_name("idp-phone")
    result = subprocess.run(
        [str(script), "scan", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "--approve" in result.stdout
    assert "--json" in result.stdout
