"""idp-phone and a device's sign-in (RFC 8628): recognising a device's QR code (its
``verification_uri_complete``) and describing the request, with the code to compare and
the warning against codes someone sent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from idp_phone.api import NotASignInCodeError, check_login_qr, device_user_code
from idp_phone.cli import DEVICE_WARNING, asker, describe_login_request

SERVER = "https://id.example.com"

VIEW = {
    "id": "x" * 43,
    "status": "scanned",
    "kind": "device",
    "user_code": "KXRT-WMPQ",
    "client": {
        "client_id": "tv",
        "name": "Living-room TV",
        "logo_uri": None,
        "redirect_host": None,
    },
    "scopes": [{"name": "openid", "description": "Sign you in with your account identifier"}],
    "browser": {
        "ip": "192.0.2.7",
        "location": "Berlin, Germany",
        "user_agent": "tv-app/2.1",
        "summary": "tv-app",
    },
    "proximity": {
        "verdict": "different_network",
        "message": "This sign-in was started on a different network than your phone.",
    },
    "number_matching": None,
    "created_at": "2026-11-25T10:00:00Z",
    "expires_at": "2026-11-25T10:10:00Z",
}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (f"{SERVER}/device?user_code=KXRT-WMPQ", "KXRT-WMPQ"),
        (f"{SERVER}/device?user_code=kxrtwmpq", "KXRT-WMPQ"),
        ("  HTTPS://ID.EXAMPLE.COM/device?user_code=KXRT-WMPQ\n", "KXRT-WMPQ"),
    ],
)
def test_a_devices_qr_code_is_recognised(text, code):
    assert device_user_code(SERVER, text) == code
    assert check_login_qr(SERVER, text) == code


@pytest.mark.parametrize(
    "text",
    [
        f"{SERVER}/devices?user_code=KXRT-WMPQ",
        f"{SERVER}/device/?user_code=KXRT-WMPQ",
        "https://evil.example/device?user_code=KXRT-WMPQ",
        f"{SERVER}/device?user_code=KXRT-WMPQ&x=1",
        f"{SERVER}/device?user_code=KXRT-WMPQ#frag",
        f"{SERVER}/device",
    ],
)
def test_other_urls_are_not_a_devices_code(text):
    assert device_user_code(SERVER, text) is None
    with pytest.raises(NotASignInCodeError):
        check_login_qr(SERVER, text)


def test_a_device_url_with_a_malformed_code_is_refused():
    with pytest.raises(NotASignInCodeError):
        device_user_code(SERVER, f"{SERVER}/device?user_code=KX1T-WMPQ")


def test_a_device_request_is_described_with_its_code_and_the_warning():
    now = datetime(2026, 11, 25, 10, 0, 15, tzinfo=UTC)
    lines = describe_login_request(VIEW, account="alice at https://id.example.com", now=now)
    lines = lines.splitlines()
    assert lines[0] == "A device wants to sign in as you to Living-room TV"
    assert lines[1] == f"  !! {DEVICE_WARNING}"
    assert "If someone sent you this code or link" in DEVICE_WARNING
    assert "  !! This sign-in was started on a different network than your phone." in lines
    assert "  Code:          KXRT-WMPQ (the device must show this same code)" in lines
    assert "  Application:   Living-room TV" in lines
    assert "  Device:        tv-app" in lines
    assert "  IP address:    192.0.2.7" in lines
    assert "  Location:      Berlin, Germany (approximate)" in lines
    assert "    - openid: Sign you in with your account identifier" in lines
    assert not any(line.startswith("  Returns to:") for line in lines)  # a device has no site
    assert asker(VIEW) == "device" and asker({"kind": "browser"}) == "browser"


def test_a_device_request_without_its_code_says_so():
    view = {**VIEW, "user_code": None, "proximity": None}
    lines = describe_login_request(view, account="alice", now=datetime.now(UTC)).splitlines()
    assert "  Code:          (not known here: compare on the device)" in lines
    assert lines[1] == f"  !! {DEVICE_WARNING}"  # the warning stays


def test_a_devices_text_cannot_smuggle_terminal_escapes():
    hostile = {**VIEW, "user_code": "KXRT\x1b[2K", "client": {"name": "TV\u202e"}}
    text = describe_login_request(hostile, account="alice", now=datetime.now(UTC))
    assert "\x1b" not in text and "\u202e" not in text
