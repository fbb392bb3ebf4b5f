"""Issue 14, item 5: less for a passer-by. Whoever glimpses a sign-in's QR code on someone
else's screen and scans it with his own phone learns nothing when the site named another
account (``login_hint``: refused, ``wrong_account``), and blocks nothing: the page can
release a code scanned by the wrong phone for a fresh one ("Not you? Show a new code").
Both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from idp import db
from idp.audit import AuditEvent
from idp.qrlogin.models import LoginRequest, ShortCodeFailure, Status
from idp_phone.api import PhoneApiError
from idp_phone.cli import ADVICE
from idp_phone.cli import main as phone_main
from support import (
    add_user,
    close_socket,
    enroll_phone,
    next_message,
    next_status,
    redirect_params,
)

WRONG_ACCOUNT = "This sign-in is for another account."


def refused(call, status: int, error: str) -> PhoneApiError:
    with pytest.raises(PhoneApiError) as info:
        call()
    assert (info.value.status, info.value.error) == (status, error), info.value
    return info.value


def stored(app, request_id: str) -> LoginRequest:
    with app.app_context():
        login = db.session.get(LoginRequest, request_id)
        assert login is not None
        db.session.expunge(login)
        return login


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


@pytest.fixture
def bob(world, tmp_path):
    """A second account, "bob" (bob@example.com), and his enrolled phone."""
    live = world[0]
    add_user(live.app, "bob")
    return enroll_phone(live.url, tmp_path / "bob-phone", "bob")


# login_hint ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hint", ["bob", "BOB", "Bob@Example.COM"])
def test_a_hint_naming_another_account_refuses_the_scan_and_shows_nothing(world, bob, hint):
    live, rp, browser, alice = world
    page = browser.open(rp.authorize_url(login_hint=hint))
    ws = browser.socket(page)
    assert next_status(ws) == "pending"

    error = refused(lambda: alice.scan(page.qr_url), 403, "wrong_account")
    assert error.description == WRONG_ACCOUNT  # not the browser, the site, or the hint
    login = stored(live.app, page.id)
    assert (login.status, login.device_pk, login.scanned_at) == (Status.PENDING, None, None)
    [row] = events(live.app, "login.scan_refused")
    who = (row.username, row.device_id, row.client_id)
    assert who == ("alice", alice.profile.device_id, rp.client_id)
    assert row.detail == {"request": page.id[:8], "reason": "wrong_account"}
    assert row.ip == "127.0.0.1"  # the phone's request; the browser's details are not logged
    assert events(live.app, "login.scanned") == []

    # The right account's phone still can: the request is bob's to scan and approve.
    view = bob.scan(page.qr_url)["login_request"]
    assert view["login_hint"] == hint
    assert next_status(ws) == "scanned"  # the first change the page heard
    bob.approve(view["id"])
    assert next_status(ws) == "approved"
    close_socket(ws)
    tokens = rp.exchange(redirect_params(browser.complete(page))["code"]).json()
    _, claims = rp.verify_id_token(tokens["id_token"])
    assert claims["preferred_username"] == "bob"


def test_the_refusal_stands_on_a_second_try(world, bob):
    """A passer-by's retry is refused again (and audited again), never let through."""
    live, rp, browser, alice = world
    page = browser.open(rp.authorize_url(login_hint="bob"))
    refused(lambda: alice.scan(page.qr_url), 403, "wrong_account")
    refused(lambda: alice.scan(page.qr_url), 403, "wrong_account")
    assert len(events(live.app, "login.scan_refused")) == 2
    assert stored(live.app, page.id).status == Status.PENDING


@pytest.mark.parametrize("hint", ["alice", "ALICE@example.com"])
def test_a_hint_naming_the_scanner_is_shown(world, bob, hint):
    _, rp, browser, alice = world
    page = browser.open(rp.authorize_url(login_hint=hint))
    view = alice.scan(page.qr_url)["login_request"]
    assert (view["status"], view["login_hint"]) == ("scanned", hint)


@pytest.mark.parametrize("hint", ["mallory@example.com", "bo", "alice@example"])
def test_a_hint_naming_nobody_is_not_shown_and_refuses_nothing(world, bob, hint):
    live, rp, browser, alice = world
    page = browser.open(rp.authorize_url(login_hint=hint))
    view = alice.scan(page.qr_url)["login_request"]
    assert (view["status"], view["login_hint"]) == ("scanned", None)
    assert events(live.app, "login.scan_refused") == []


def test_no_hint_is_null(world):
    _, rp, browser, alice = world
    page = browser.open(rp.authorize_url())
    assert alice.scan(page.qr_url)["login_request"]["login_hint"] is None


def test_a_typed_code_for_another_account_is_refused_and_not_used_up(world, bob):
    live, rp, browser, alice = world
    page = browser.open(rp.authorize_url(login_hint="bob@example.com"))
    code = browser.short_code(page).json()["code"]

    error = refused(lambda: alice.scan_code(code), 403, "wrong_account")
    assert error.description == WRONG_ACCOUNT
    with live.app.app_context():  # a right code for another account is no wrong attempt
        assert db.session.scalars(select(ShortCodeFailure)).all() == []
    [row] = events(live.app, "login.scan_refused")
    assert row.detail == {"request": page.id[:8], "reason": "wrong_account"}
    login = stored(live.app, page.id)
    assert (login.status, login.short_code_hash is not None) == (Status.PENDING, True)

    view = bob.scan_code(code)["login_request"]  # the same code still works for bob
    assert (view["id"], view["login_hint"]) == (page.id, "bob@example.com")
    bob.approve(view["id"])
    assert "code" in redirect_params(browser.complete(page))


def test_idp_phone_says_so_and_exits_like_other_refusals(world, bob, capsys):
    live, rp, browser, alice = world
    page = browser.open(rp.authorize_url(login_hint="bob"))
    profile = ["--profile", str(alice.profile_dir)]
    assert phone_main([*profile, "scan", page.qr_url, "--approve"]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # nothing of the sign-in was shown
    assert err.splitlines() == [f"error: wrong_account: {WRONG_ACCOUNT}", ADVICE["wrong_account"]]
    assert stored(live.app, page.id).status == Status.PENDING


# "Not you? Show a new code" ------------------------------------------------------------------


def test_the_page_releases_a_code_scanned_by_the_wrong_phone(world, bob):
    live, rp, browser, alice = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    alice.scan(page.qr_url)  # alice glimpsed bob's screen
    assert next_status(ws) == "scanned"

    restarted = browser.restart(page)
    assert restarted.status_code == 200, restarted.text
    assert restarted.headers["Cache-Control"] == "no-store"
    fresh = restarted.json()
    assert fresh["id"] != page.id and fresh["qr_svg"].startswith("<svg")
    assert fresh["renewals_left"] == page.state["renewals_left"] - 1
    assert next_status(ws) == "denied"  # the old request is over (the page stops listening)
    close_socket(ws)

    old = stored(live.app, page.id)
    assert old.status == Status.DENIED
    assert old.renewed_at is not None and old.decided_at is not None
    assert events(live.app, "login.denied") == []  # nobody denied it: the browser moved on
    [row] = events(live.app, "login.restarted")
    assert (row.username, row.device_id) == ("alice", alice.profile.device_id)
    assert row.detail["reason"] == "released" and row.detail["request"] == page.id[:8]

    # The phone that scanned the old code is told plainly, and changes nothing.
    error = refused(lambda: alice.approve(page.id), 409, "already_used")
    assert "new code" in error.description
    refused(lambda: alice.deny(page.id), 409, "already_used")
    assert stored(live.app, page.id).status == Status.DENIED
    refused(lambda: alice.scan(page.qr_url), 409, "already_used")  # nor scanned again
    assert browser.renew(page).status_code == 409  # nor renewed: it was replaced once

    # The new code works, to a code for the right account.
    page.state = fresh
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    bob.approve(bob.scan(fresh["qr_url"])["login_request"]["id"])
    assert next_status(ws) == "scanned"
    assert next_status(ws) == "approved"
    close_socket(ws)
    tokens = rp.exchange(redirect_params(browser.complete(page))["code"]).json()
    _, claims = rp.verify_id_token(tokens["id_token"])
    assert claims["preferred_username"] == "bob"


@pytest.mark.idp_config(IDP_QR_MAX_RENEWALS=1)
def test_releasing_is_bounded_like_renewing(world, bob):
    _, rp, browser, alice = world
    page = browser.open(rp.authorize_url())
    alice.scan(page.qr_url)
    first = browser.restart(page)
    assert first.status_code == 200, first.text
    page.state = first.json()
    assert page.state["renewals_left"] == 0
    alice.scan(page.qr_url)
    second = browser.restart(page)
    assert (second.status_code, second.json()["error"]) == (429, "renewal_limit")
    # The refused restart changed nothing: the scan stands (the page says reload).
    refused(lambda: bob.scan(page.qr_url), 409, "already_used")


def test_only_a_scanned_code_of_this_browser_is_released(world, bob):
    live, rp, browser, alice = world
    page = browser.open(rp.authorize_url())
    waiting = browser.restart(page)  # nobody scanned it yet
    assert (waiting.status_code, waiting.json()["error"]) == (400, "invalid_request")

    alice.scan(page.qr_url)
    foreign = browser.restart(page, origin="https://evil.example")
    assert (foreign.status_code, foreign.json()["error"]) == (403, "foreign_origin")
    other_browser = type(browser)(live.url)
    stranger = other_browser._post_json(page.state["restart_url"], None)
    assert (stranger.status_code, stranger.json()["error"]) == (403, "binding_mismatch")
    assert stored(live.app, page.id).status == Status.SCANNED

    alice.approve(page.id)  # decided: no longer released
    decided = browser.restart(page)
    assert (decided.status_code, decided.json()["error"]) == (409, "already_used")
    assert stored(live.app, page.id).status == Status.APPROVED


def test_a_code_is_released_once(world):
    _, rp, browser, alice = world
    page = browser.open(rp.authorize_url())
    alice.scan(page.qr_url)
    assert browser.restart(page).status_code == 200
    again = browser.restart(page)
    assert (again.status_code, again.json()["error"]) == (409, "already_used")


# "Not my sign-in": the phone gives it back -------------------------------------------------


def test_the_phone_gives_back_a_code_it_scanned_by_mistake(world, bob):
    live, rp, browser, alice = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    alice.scan(page.qr_url)
    assert next_status(ws) == "scanned"

    given_back = alice.release(page.id)["login_request"]
    assert given_back == {"id": page.id, "status": "pending"}
    assert next_status(ws) == "pending"  # the page shows its code again
    login = stored(live.app, page.id)
    assert (login.status, login.device_pk, login.scanned_at) == (Status.PENDING, None, None)
    [row] = events(live.app, "login.released")
    assert (row.username, row.device_id) == ("alice", alice.profile.device_id)
    assert row.detail["request"] == page.id[:8] and row.ip == "127.0.0.1"
    # It is no longer alice's to decide, and the right phone goes on as usual.
    refused(lambda: alice.approve(page.id), 400, "invalid_request")
    view = bob.scan(page.qr_url)["login_request"]
    assert next_status(ws) == "scanned"
    bob.approve(view["id"])
    assert next_status(ws) == "approved"
    close_socket(ws)
    tokens = rp.exchange(redirect_params(browser.complete(page))["code"]).json()
    _, claims = rp.verify_id_token(tokens["id_token"])
    assert claims["preferred_username"] == "bob"


@pytest.mark.idp_config(IDP_NUMBER_MATCHING=True)
def test_giving_back_clears_the_number_to_match(world, bob):
    live, rp, browser, alice = world
    page = browser.open(rp.authorize_url())
    ws = browser.socket(page)
    assert next_status(ws) == "pending"
    alice.scan(page.qr_url)
    assert next_status(ws) == "scanned"
    alice.release(page.id)
    back = next_message(ws)
    assert back["status"] == "pending" and "number" not in back  # no number on the page
    assert stored(live.app, page.id).match_number is None
    view = bob.scan(page.qr_url)["login_request"]
    scanned = next_message(ws)
    assert (
        scanned["status"] == "scanned" and scanned["number"] in view["number_matching"]["choices"]
    )
    bob.approve(view["id"], scanned["number"])
    assert next_status(ws) == "approved"
    close_socket(ws)


def test_only_the_phone_that_scanned_gives_back(world, bob):
    live, rp, browser, alice = world
    page = browser.open(rp.authorize_url())
    refused(lambda: alice.release(page.id), 400, "invalid_request")  # nobody scanned it
    alice.scan(page.qr_url)
    refused(lambda: bob.release(page.id), 403, "wrong_device")
    assert stored(live.app, page.id).status == Status.SCANNED
    alice.approve(page.id)
    refused(lambda: alice.release(page.id), 409, "already_used")  # decided: it stands
    assert stored(live.app, page.id).status == Status.APPROVED
    refused(lambda: alice.release("x" * 43), 410, "expired")  # unknown: as the others
    assert events(live.app, "login.released") == []
