"""The passer-by's transitions (issue 14, item 5) in the state machine, on SQLite and on
PostgreSQL + Redis: the page releasing a scanned request ("Not you?"), the phone giving one
back, and their races with the phone's decision. The fixtures and helpers are the state
machine's own (tests/unit/idp/test_login_states.py)."""

from collections.abc import Callable
from typing import Any

import pytest
import test_login_states as states
from test_login_states import (
    BINDING,
    OTHER_BINDING,
    USER_AGENT,
    World,
    approve_login,
    as_a_view,
    create_login_request,
    device,
    race,
    raises,
    row,
    scan_login,
    start,
    statuses,
)

from idp import db
from idp.accounts.services import create_user
from idp.errors import AlreadyUsed, BindingMismatch, InvalidRequest, RenewalLimit, WrongAccount
from idp.qrlogin import services
from idp.qrlogin.models import LoginRequest, Status
from idp.web import Caller
from support import PASSWORD

# The state machine's fixtures, shared: a user with phones and a client; what is published.
world = states.world
published = states.published

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)

restart_login_request = as_a_view(services.restart_login_request)
release_login = as_a_view(services.release_login)
BROWSER = Caller("192.0.2.7", USER_AGENT)


def test_the_page_releases_a_scanned_request_for_a_fresh_one(world, published):
    login = start(world)
    scan_login(login.id, device(world.device))
    fresh = restart_login_request(login.id, BINDING, browser=BROWSER)
    old = row(login.id)
    assert (old.status, old.device_pk) == (Status.DENIED, world.device)
    assert old.renewed_at is not None and old.decided_at is not None
    new = row(fresh.id)
    assert (new.status, new.renewals, new.params) == (Status.PENDING, 1, old.params)
    assert new.binding_hash == old.binding_hash
    assert statuses(published, login.id) == ["scanned", "denied"]
    assert statuses(published, fresh.id) == []  # a new request is not published
    with raises(AlreadyUsed, "already_used", 409, "the computer showed a new code instead: "
                "this one signs nobody in"):  # fmt: skip
        approve_login(login.id, device(world.device))


def test_only_this_browser_and_only_a_scanned_request(world):
    login = start(world)
    with raises(InvalidRequest, "invalid_request", 400):
        restart_login_request(login.id, BINDING, browser=BROWSER)
    scan_login(login.id, device(world.device))
    with raises(BindingMismatch, "binding_mismatch", 403):
        restart_login_request(login.id, OTHER_BINDING, browser=BROWSER)
    assert row(login.id).status == Status.SCANNED


def test_releasing_counts_as_a_renewal(world, app):
    app.config["IDP_QR_MAX_RENEWALS"] = 1
    login = start(world)
    scan_login(login.id, device(world.device))
    fresh = restart_login_request(login.id, BINDING, browser=BROWSER)
    scan_login(fresh.id, device(world.device))
    with raises(RenewalLimit, "renewal_limit", 429):
        restart_login_request(fresh.id, BINDING, browser=BROWSER)
    assert row(fresh.id).status == Status.SCANNED


def test_the_phone_gives_a_request_back(world, published):
    login = start(world)
    scan_login(login.id, device(world.device))
    assert release_login(login.id, device(world.device)).status == Status.PENDING
    back = row(login.id)
    assert (back.status, back.device_pk, back.scanned_at, back.match_number) == (
        Status.PENDING,
        None,
        None,
        None,
    )
    assert statuses(published, login.id) == ["scanned", "pending"]
    assert scan_login(login.id, device(world.other_device)).device_pk == world.other_device


def test_a_hint_naming_another_account_refuses_the_scan(world):
    login = create_login_request(
        client_id=world.client_id,
        params={"login_hint": "Bob@Example.com"},
        binding_secret=BINDING,
        browser=BROWSER,
    )
    with db.unit_of_work():
        create_user("bob", PASSWORD, email="bob@example.com", name="Bob")
    with raises(WrongAccount, "wrong_account", 403, "This sign-in is for another account."):
        scan_login(login.id, device(world.device))
    stored = row(login.id)
    assert stored.status == Status.PENDING
    assert services.hint_names_user(stored, world.user_id) is False


@pytest.mark.parametrize(
    ("hint", "names"),
    [("alice", True), ("ALICE@EXAMPLE.COM", True), ("nobody", None), ("", None), (None, None)],
)
def test_whom_a_hint_names(world, hint, names):
    params = {} if hint is None else {"login_hint": hint}
    login = LoginRequest(params=params)
    assert services.hint_names_user(login, world.user_id) is names


def _scanned(world: World) -> LoginRequest:
    login = start(world)
    scan_login(login.id, device(world.device))
    db.session.close()  # the test's own session holds no transaction (SQLite write lock)
    return login


@pytest.mark.parametrize("decision", ["approve", "release"])
def test_the_page_releasing_races_the_phone_deciding_and_one_wins(world, app, decision):
    login = _scanned(world)

    def act(i: int, ready: Callable[[], Any]) -> str:
        phone = device(world.device)
        db.session.commit()  # end the read transaction before the start line
        ready()
        if i == 0:
            restart_login_request(login.id, BINDING, browser=BROWSER)
            return "restarted"
        if decision == "approve":
            approve_login(login.id, phone)
        else:
            release_login(login.id, phone)
        return decision

    results, errors = race(app, 2, act)
    assert len(results) == 1 and len(errors) == 1, (results, errors)
    assert type(errors[0]) in (AlreadyUsed, InvalidRequest), repr(errors[0])
    stored = row(login.id)
    replaced = db.session.query(LoginRequest).filter(LoginRequest.id != login.id).count()
    if results == ["restarted"]:
        assert (stored.status, replaced) == (Status.DENIED, 1)
    else:
        expected = Status.APPROVED if decision == "approve" else Status.PENDING
        assert (stored.status, stored.renewed_at, replaced) == (expected, None, 0)


@pytest.mark.parametrize("hint", ["björn@example.com", "BJÖRN@EXAMPLE.COM", "Björn@Example.com"])
def test_a_hint_naming_an_address_with_letters_beyond_ascii_is_matched_ignoring_case(world, hint):
    """The databases' lower() folds ASCII only (SQLite; PostgreSQL by its locale): an
    address like BJÖRN@… must still be named by björn@…, else the scan is let through."""
    with db.unit_of_work():
        create_user("bjorn", PASSWORD, email="BJÖRN@example.com", name="Björn")
    login = create_login_request(
        client_id=world.client_id,
        params={"login_hint": hint},
        binding_secret=BINDING,
        browser=BROWSER,
    )
    with raises(WrongAccount, "wrong_account", 403):
        scan_login(login.id, device(world.device))
    assert row(login.id).status == Status.PENDING


@pytest.mark.parametrize("hint", ["b_örn@example.com", "b%@example.com ö", "björn@example.co"])
def test_a_hint_beyond_ascii_names_only_that_address(world, hint):
    """The wildcards of the databases' LIKE in a hint are letters like any other."""
    with db.unit_of_work():
        create_user("bjorn", PASSWORD, email="BJÖRN@example.com", name="Björn")
    assert services.hint_names_user(LoginRequest(params={"login_hint": hint}), 0) is None
