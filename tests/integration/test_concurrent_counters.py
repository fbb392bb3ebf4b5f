"""Budgets that guard a secret cannot be raced: N concurrent guesses check at most the
budget's number of secrets (both backends). A limit that is tested before the request
and counted after it lets every concurrent guess through its test."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable

import pytest
import requests

from idp_phone.api import PhoneApiError, PhoneClient
from idp_phone.profile import generate_key
from idp_phone.proof import make_proof
from support import PASSWORD, add_user

GUESSES = 14


def all_at_once(attempt: Callable[[int], tuple[int, str]], count: int = GUESSES) -> Counter:
    """Run ``attempt(i)`` in ``count`` threads released together; count the answers."""
    start = threading.Barrier(count)
    answers: list[tuple[int, str]] = []

    def run(i: int) -> None:
        start.wait()
        answers.append(attempt(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == count
    return Counter(answers)


@pytest.mark.idp_config(IDP_LIMIT_PASSWORD="5 per 15 minutes", IDP_LIMIT_ENROLL="100/minute")
def test_concurrent_wrong_passwords_check_at_most_the_budget(live_server, tmp_path):
    add_user(live_server.app, "alice")

    def guess(i: int) -> tuple[int, str]:
        phone = PhoneClient(tmp_path / f"guess{i}")
        try:
            phone.enroll(live_server.url, "alice", f"wrong-password-{i}", f"guess {i}")
        except PhoneApiError as error:
            return error.status, error.error
        return 201, "enrolled"

    answers = all_at_once(guess)
    assert answers == {(401, "invalid_credentials"): 5, (429, "too_many_requests"): GUESSES - 5}
    # Locked now: the right password is refused as well, until the window has passed.
    with pytest.raises(PhoneApiError) as locked:
        PhoneClient(tmp_path / "owner").enroll(live_server.url, "alice", PASSWORD, "owner")
    assert (locked.value.status, locked.value.error) == (429, "too_many_requests")


@pytest.mark.idp_config(IDP_LIMIT_PASSWORD="3 per 15 minutes")
def test_a_right_password_forgives_the_wrong_ones_before_it(live_server, tmp_path):
    add_user(live_server.app, "alice")
    for i in range(2):
        with pytest.raises(PhoneApiError) as wrong:
            PhoneClient(tmp_path / f"w{i}").enroll(live_server.url, "alice", "nope-nope", "x")
        assert wrong.value.error == "invalid_credentials"
    PhoneClient(tmp_path / "owner").enroll(live_server.url, "alice", PASSWORD, "owner")
    # The budget is whole again: three more wrong passwords before the lockout.
    for i in range(3):
        with pytest.raises(PhoneApiError) as wrong:
            PhoneClient(tmp_path / f"v{i}").enroll(live_server.url, "alice", "nope-nope", "x")
        assert wrong.value.error == "invalid_credentials"
    with pytest.raises(PhoneApiError) as locked:
        PhoneClient(tmp_path / "late").enroll(live_server.url, "alice", PASSWORD, "late")
    assert locked.value.error == "too_many_requests"


@pytest.mark.idp_config(IDP_SHORT_CODE_ATTEMPTS=5, IDP_SHORT_CODE_WINDOW=600)
def test_concurrent_wrong_short_codes_check_at_most_the_budget(world):
    live, rp, browser, phone = world
    page = browser.open(rp.authorize_url())
    code = browser.short_code(page).json()["code"]
    url = f"{live.url}/api/mobile/v1/login-requests/scan"

    def guess(i: int) -> tuple[int, str]:
        wrong = "AAAA-AAAA" if code != "AAAA-AAAA" else "CCCC-CCCC"
        body = json.dumps({"code": wrong}).encode()
        proof = make_proof(phone.profile.key, "POST", url, body, kid=phone.profile.device_id)
        headers = {"Device-Proof": proof, "Content-Type": "application/json"}
        answer = requests.post(url, data=body, headers=headers, timeout=30)
        return answer.status_code, answer.json()["error"]

    answers = all_at_once(guess)
    assert answers == {(404, "unknown_code"): 5, (429, "too_many_attempts"): GUESSES - 5}


@pytest.mark.idp_config(IDP_LIMIT_PASSWORD="2 per 15 minutes")
def test_only_wrong_passwords_use_the_budget(live_server, tmp_path, monkeypatch):
    """A malformed username is refused before it is counted, and a right password for a
    phone that is enrolled already (device_exists) is forgiven like any right password."""
    add_user(live_server.app, "alice")
    key = generate_key()
    monkeypatch.setattr("idp_phone.api.generate_key", lambda: key)  # one phone, one key
    PhoneClient(tmp_path / "phone").enroll(live_server.url, "alice", PASSWORD, "phone")
    for i in range(3):
        with pytest.raises(PhoneApiError) as again:
            PhoneClient(tmp_path / f"again{i}").enroll(live_server.url, "alice", PASSWORD, "p")
        assert (again.value.status, again.value.error) == (409, "device_exists")
    for i in range(3):
        with pytest.raises(PhoneApiError) as malformed:
            PhoneClient(tmp_path / f"m{i}").enroll(live_server.url, "alice\n", "nope-nope", "x")
        assert (malformed.value.status, malformed.value.error) == (400, "invalid_request")
    for i in range(2):  # the whole budget is still there
        with pytest.raises(PhoneApiError) as wrong:
            PhoneClient(tmp_path / f"w{i}").enroll(live_server.url, "alice", "nope-nope", "x")
        assert wrong.value.error == "invalid_credentials"
