"""idp-phone and a next phone's approval, end to end against a live IdP on both backends:
``idp-phone enroll`` in a process of its own prints the code and waits, while the old
phone's ``idp-phone approve-phone CODE`` approves or denies; the library's wait."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from idp import db
from idp.mobile.models import Device, EnrollmentRequest
from idp_phone.api import ApprovalNeeded, PhoneClient
from idp_phone.cli import main as phone_main
from support import PASSWORD, Browser, enroll_phone


def device_count(app) -> int:
    with app.app_context():
        return db.session.query(Device).count()


def test_an_approved_key_is_an_ordinary_device_for_idp_phone(world, tmp_path):
    """The helper the other tests use: idp-phone's enroll, the old phone's lookup and
    approval, and the new profile saved by the poll."""
    live, rp, _, phone = world
    second = enroll_phone(live.url, tmp_path / "second", approver=phone, device_name="Second")
    assert second.me()["enrolled_via"] == f"device:{phone.profile.device_id}"
    page = Browser(live.url).open(rp.authorize_url())
    assert second.scan(page.qr_url)["login_request"]["status"] == "scanned"


def test_approving_from_idp_phone_in_process(world, tmp_path):
    """PhoneClient.wait_for_approval: polls until approved, then saves the profile."""
    live, _, _, phone = world
    client = PhoneClient(tmp_path / "new")
    with pytest.raises(ApprovalNeeded) as needed:
        client.enroll(live.url, "alice", PASSWORD, "New")
    polls: list[float] = []

    def approve_on_first_sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            phone.approve_enrollment(
                phone.lookup_enrollment(needed.value.pending.code)["pending_enrollment"]["id"]
            )

    data = client.wait_for_approval(needed.value.pending, sleep=approve_on_first_sleep)
    assert polls == [2.0]
    assert client.profile.device_id == data["device_id"]
    assert client.me()["device_id"] == data["device_id"]


# idp-phone, end to end: `enroll` in a process of its own waits while the old phone's
# `approve-phone` decides. ------------------------------------------------------------------


def start_enroll(live, profile: Path, name: str = "Work phone") -> subprocess.Popen:
    """``idp-phone enroll`` in a process of its own, its password given on stdin."""
    process = subprocess.Popen(
        [sys.executable, "-m", "idp_phone.cli", "--profile", str(profile), "enroll",
         "--server", live.url, "--username", "alice", "--password-stdin", "--device-name", name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(PASSWORD + "\n")
    process.stdin.close()
    return process


def code_shown(process: subprocess.Popen) -> str:
    """The code the waiting ``enroll`` printed (it keeps waiting)."""
    assert process.stdout is not None
    first = process.stdout.readline()
    assert first.startswith("Another phone of yours must approve this one. On it, choose"), first
    match = re.fullmatch(
        r"Another phone of yours must approve this one\. On it, choose 'Set up another phone' "
        r"and enter this code: ([A-Z]{4}-[A-Z]{4})\n",
        first,
    )
    assert match, first
    return match.group(1)


def finish(process: subprocess.Popen) -> tuple[str, str]:
    """Wait for the process to end: the rest of its stdout, and its stderr."""
    assert process.stdout is not None and process.stderr is not None
    process.wait(timeout=30)
    return process.stdout.read(), process.stderr.read()


def test_idp_phone_enroll_waits_for_approve_phone(world, tmp_path, capsys):
    live, _, _, phone = world
    process = start_enroll(live, tmp_path / "new")
    try:
        code = code_shown(process)
        old = ["--profile", str(phone.profile_dir)]
        assert phone_main([*old, "approve-phone", code.lower(), "--approve"]) == 0
        shown = capsys.readouterr().out
        assert "A new phone wants to be set up as yours: Work phone" in shown
        assert "The new phone is on the same network as this phone." in shown
        assert "IP address:    127.0.0.1" in shown
        assert re.search(r"Approved: Work phone \(dev_[\w-]+\) is now one of your phones", shown)
        out, err = finish(process)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Enrolled Work phone (dev_" in out
    new = PhoneClient(tmp_path / "new")
    assert new.me()["enrolled_via"] == f"device:{phone.profile.device_id}"
    assert phone_main(["--profile", str(tmp_path / "new"), "devices"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert "enrolled with the password" in listing[0]
    assert f"approved by {phone.profile.device_id}" in listing[1]
    assert listing[1].endswith("Work phone  (this phone)")


def test_idp_phone_enroll_ends_when_the_old_phone_denies(world, tmp_path, capsys):
    live, _, _, phone = world
    process = start_enroll(live, tmp_path / "new")
    try:
        code = code_shown(process)
        old = ["--profile", str(phone.profile_dir)]
        assert phone_main([*old, "approve-phone", code, "--deny"]) == 0
        assert "Denied: that phone was not set up." in capsys.readouterr().out
        _, err = finish(process)
    finally:
        process.kill()
    assert process.returncode == 1
    assert "error: enrollment_denied: the other phone's approval was denied" in err
    assert not (tmp_path / "new" / "device.json").exists()  # nothing saved
    assert device_count(live.app) == 1


def test_approve_phone_refuses_clearly(world, capsys, monkeypatch):
    _, _, _, phone = world
    old = ["--profile", str(phone.profile_dir)]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert phone_main([*old, "approve-phone", "ACDE-FGHJ"]) == 2  # no terminal, no flag
    assert "give --approve or --deny" in capsys.readouterr().err
    assert phone_main([*old, "approve-phone", "not a code", "--approve"]) == 2
    assert "8 letters" in capsys.readouterr().err
    assert phone_main([*old, "approve-phone", "ACDE-FGHJ", "--approve"]) == 1
    assert "error: invalid_enrollment_code:" in capsys.readouterr().err


def test_ctrl_c_in_idp_phone_enroll_withdraws_the_request(world, tmp_path, capsys):
    """Ctrl-C while waiting: the request is withdrawn before exiting 130, so the old phone
    can no longer approve a phone whose key is gone."""
    live, _, _, phone = world
    process = start_enroll(live, tmp_path / "new")
    try:
        code = code_shown(process)
        assert process.stdout is not None
        assert process.stdout.readline().startswith("  (idp-phone: approve-phone")
        assert process.stdout.readline().startswith("Waiting for the approval;")
        process.send_signal(signal.SIGINT)
        _, err = finish(process)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "The request is withdrawn: no phone can approve it now." in err
    old = ["--profile", str(phone.profile_dir)]
    assert phone_main([*old, "approve-phone", code, "--approve"]) == 1
    assert "error: invalid_enrollment_code:" in capsys.readouterr().err
    assert not (tmp_path / "new" / "device.json").exists()
    assert device_count(live.app) == 1
    with live.app.app_context():
        assert db.session.scalar(select(EnrollmentRequest.status)) == "withdrawn"
