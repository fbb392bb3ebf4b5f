"""A user lists and revokes their own phones from a phone (a lost one, or this one)."""

from __future__ import annotations

import pytest

from idp import audit
from idp_phone.api import PhoneApiError
from idp_phone.cli import main as phone_main
from support import add_user, enroll_phone


def test_a_user_lists_their_phones(world, tmp_path):
    live, _, _, phone = world
    second = enroll_phone(live.url, tmp_path / "second", approver=phone)
    add_user(live.app, "bob")
    enroll_phone(live.url, tmp_path / "bob", username="bob")
    devices = phone.devices()
    assert [d["device_id"] for d in devices] == [
        phone.profile.device_id,
        second.profile.device_id,
    ]  # bob's phone is not listed
    assert [d["this_device"] for d in devices] == [True, False]
    assert all(d["revoked_at"] is None and d["created_at"].endswith("Z") for d in devices)


def test_revoking_a_lost_phone_from_another(world, tmp_path, capsys):
    live, rp, browser, phone = world
    lost = enroll_phone(live.url, tmp_path / "lost", approver=phone)
    profile = ["--profile", str(phone.profile_dir)]
    assert phone_main([*profile, "revoke", lost.profile.device_id]) == 0
    assert "Revoked" in capsys.readouterr().out
    page = browser.open(rp.authorize_url())
    with pytest.raises(PhoneApiError) as refused:
        lost.scan(page.qr_url)
    assert refused.value.error == "device_revoked"
    assert phone_main([*profile, "devices"]) == 0
    listing = capsys.readouterr().out
    assert "(this phone)" in listing and "revoked" in listing
    with live.app.app_context():
        line = audit.query()[-1]
    assert (line.event, line.device_id) == ("device.revoked", lost.profile.device_id)
    assert line.detail == {
        "by": phone.profile.device_id,
        "tokens": 0,
        "codes": 0,
        "sessions": 0,
        "logins": 0,
    }


def test_a_phone_can_revoke_itself(world):
    _, _, _, phone = world
    phone.revoke(phone.profile.device_id)
    with pytest.raises(PhoneApiError) as refused:
        phone.me()
    assert refused.value.error == "device_revoked"


def test_another_users_phone_cannot_be_revoked_and_looks_unknown(world, tmp_path):
    live, _, _, phone = world
    add_user(live.app, "bob")
    bob = enroll_phone(live.url, tmp_path / "bob", username="bob")
    for target in (bob.profile.device_id, "dev_nonexistent"):
        with pytest.raises(PhoneApiError) as refused:
            phone.revoke(target)
        assert (refused.value.status, refused.value.error) == (404, "device_not_found")
    assert bob.me()["device_id"] == bob.profile.device_id  # still works
