"""`idp demo` as a new user meets it: real processes (gunicorn + gevent IdP, the demo
RP), the printed phone command, and the browser landing back on the RP signed in."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from support import PageSocket, enroll_by_invitation, free_port, next_status, terminal_qr_text

BIN = Path(sys.executable).parent


@pytest.fixture
def demo(tmp_path):
    port, rp_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    env = os.environ | {"IDP_INSTANCE_PATH": str(tmp_path / "instance"), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "idp"), "demo", "--port", str(port), "--rp-port", str(rp_port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "QR-IdP demo is running" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", f"http://localhost:{rp_port}", log, process
    finally:
        with contextlib.suppress(ProcessLookupError):  # (a test may have stopped it all)
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def printed_command(log: Path, qr_url: str, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if qr_url in line and "--approve" in line:
                return shlex.split(line.strip())
        time.sleep(0.1)
    raise AssertionError(f"no phone command printed for {qr_url}:\n{log.read_text()}")


def test_demo_sign_in_as_a_new_user(demo, tmp_path):
    issuer, rp_url, log, _ = demo
    browser = requests.Session()
    home = browser.get(f"{rp_url}/", timeout=10)
    assert "Sign in with your phone" in home.text

    to_idp = browser.get(f"{rp_url}/login", allow_redirects=False, timeout=10)
    assert to_idp.headers["Location"].startswith(f"{issuer}/authorize?")
    page = browser.get(to_idp.headers["Location"], timeout=10)
    assert 'Sign in to <span class="client">Demo RP</span>' in page.text
    state = json.loads(html.unescape(re.search(r'data-state="([^"]*)"', page.text).group(1)))

    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies if c.name == "idp_binding")
    ws = PageSocket.connect(
        issuer.replace("http", "ws") + state["socket_path"],
        headers={"Origin": issuer, "Cookie": cookie},
    )
    assert next_status(ws) == "pending"

    command = printed_command(log, state["qr_url"])
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Demo RP" in result.stdout

    assert next_status(ws) == "scanned"
    assert next_status(ws) == "approved"
    back = browser.get(f"{issuer}{state['complete_url']}", timeout=10)  # follows to the RP
    assert back.url == f"{rp_url}/"
    assert "Signed in as" in back.text and "Demo User" in back.text
    # The IdP's worker patched the standard library before anything imported ssl.
    assert "MonkeyPatchWarning" not in log.read_text()


def test_demo_prints_the_phone_app_and_an_invitation_that_enrolls(demo):
    issuer, _, log, _ = demo
    banner = log.read_text()
    assert f"Approve with the phone web app, {issuer}/app/ :" in banner
    [link] = re.findall(re.escape(f"{issuer}/app/invite/") + r"[A-Za-z0-9_-]{43}", banner)
    assert terminal_qr_text(banner) == link  # the QR code beside it is the same link
    token = link.rsplit("/", 1)[1]
    enrolled = enroll_by_invitation(issuer, token, device_name="Demo browser")
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["user"]["username"] == "demo"
    again = enroll_by_invitation(issuer, token)
    assert (again.status_code, again.json()["error"]) == (410, "invalid_invitation")


def test_demo_device_signs_in_with_the_printed_commands(demo, tmp_path):
    issuer, _, log, _ = demo
    banner = log.read_text()
    [device_line] = [line for line in banner.splitlines() if "-m demo_device" in line]
    [phone_line] = [line for line in banner.splitlines() if "scan --user-code CODE" in line]
    device = subprocess.Popen(
        shlex.split(device_line.strip()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        shown = ""
        assert device.stdout is not None
        while "It expires in" not in shown:
            line = device.stdout.readline()
            assert line, shown
            shown += line
        code = re.search(r"type the code:\s+([A-Z]{4}-[A-Z]{4})", shown).group(1)
        assert "Never type a code that someone" in shown
        assert terminal_qr_text(shown) == f"{issuer}/device?user_code={code}"
        assert f"{issuer}/device" in shown
        approve = shlex.split(phone_line.strip().replace("CODE", code))
        result = subprocess.run(approve, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Demo TV" in result.stdout and code in result.stdout
        rest, _ = device.communicate(timeout=60)
    finally:
        if device.poll() is None:
            device.kill()
    assert device.returncode == 0, shown + rest
    claims = json.loads(rest[rest.index("{") :])
    assert claims["iss"] == issuer and claims["preferred_username"] == "demo"
    assert claims["amr"] == ["swk", "user"]


def test_a_sigterm_stops_the_demo_and_everything_it_started(demo):
    issuer, rp_url, _, process = demo
    os.kill(process.pid, signal.SIGTERM)  # the demo only, not its process group
    assert process.wait(timeout=30) == 0
    for url in (f"{issuer}/.well-known/openid-configuration", f"{rp_url}/"):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)
