"""The login-request state machine (idp.qrlogin.services), on SQLite and on PostgreSQL + Redis.

Every transition is checked for its result, its row and its broker message; the races are run
for real, with threads that each have their own app context, session and connection.
"""

import functools
import re
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from idp import db
from idp.accounts.services import create_user
from idp.admin.services import create_client
from idp.db import utcnow
from idp.errors import (
    AlreadyUsed,
    BindingMismatch,
    Expired,
    IdPError,
    InvalidRequest,
    NotApproved,
    UnknownRequest,
    WrongDevice,
)
from idp.mobile.models import Device
from idp.oauth.models import digest
from idp.qrlogin import services
from idp.qrlogin.models import LoginRequest, Status
from idp.qrlogin.services import channel, claim_completion, find_login_request
from idp.web import Caller
from support import PASSWORD, REDIRECT_URI, record_publishes

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"], indirect=True)

BINDING = "b" * 43
OTHER_BINDING = "o" * 43
THREADS = 8
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def as_a_view(service: Callable[..., Any]) -> Callable[..., Any]:
    """Call ``service`` as a view does: what it did is committed once it returns (and
    published after that commit), rolled back if it raises."""

    @functools.wraps(service)
    def call(*args: Any, **kwargs: Any) -> Any:
        with db.unit_of_work():
            return service(*args, **kwargs)

    return call


create_login_request = as_a_view(services.create_login_request)
scan_login = as_a_view(services.scan_login)
approve_login = as_a_view(services.approve_login)
deny_login = as_a_view(services.deny_login)
expire_login = as_a_view(services.expire_login)


@dataclass
class World:
    client_id: str
    user_id: int
    device: int  # primary keys of Device rows of the same user
    other_device: int
    spare_devices: list[int]


@pytest.fixture
def world(app):
    """A user with phones, a client; the test body runs inside an app context."""
    with app.app_context():
        with db.unit_of_work():
            user = create_user("alice", PASSWORD, email="alice@example.com", name="Alice")
            client, _ = create_client("Test RP", [REDIRECT_URI])
        devices = [
            Device(
                device_id=f"dev_{i}",
                user_id=user.id,
                name=f"Phone {i}",
                public_jwk='{"kty": "EC", "crv": "P-256", "x": "dummy", "y": "dummy"}',
                key_thumbprint=f"thumbprint-{i:02d}",
            )
            for i in range(2 + THREADS)
        ]
        db.session.add_all(devices)
        db.session.commit()
        ids = [d.id for d in devices]
        yield World(
            client_id=client.client_id,
            user_id=user.id,
            device=ids[0],
            other_device=ids[1],
            spare_devices=ids[2:],
        )


@pytest.fixture
def published(app, monkeypatch):
    """Every message the services publish, in order, as (channel, message)."""
    return record_publishes(app, monkeypatch)


def device(pk: int) -> Device:
    found = db.session.get(Device, pk)
    assert found is not None
    return found


def start(world: World) -> LoginRequest:
    return create_login_request(
        client_id=world.client_id,
        params={"response_type": "code", "client_id": world.client_id, "state": "xyz"},
        binding_secret=BINDING,
        browser=Caller("192.0.2.7", USER_AGENT),
    )


def row(request_id: str) -> LoginRequest:
    """The row as the database has it now."""
    db.session.expire_all()
    return db.session.get(LoginRequest, request_id, populate_existing=True)


def expire(request_id: str) -> None:
    db.session.execute(
        update(LoginRequest)
        .where(LoginRequest.id == request_id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()


@contextmanager
def raises(error: type[IdPError], code: str, status: int, description: str | None = None):
    """pytest.raises for exactly this class, checking its wire code, status and text."""
    with pytest.raises(error) as caught:
        yield caught
    assert type(caught.value) is error, repr(caught.value)
    assert caught.value.code == code
    assert caught.value.status == status
    if description is not None:
        assert caught.value.description == description


def statuses(published: list, request_id: str) -> list[str]:
    return [m["status"] for name, m in published if name == channel(request_id)]


# Creation ---------------------------------------------------------------------------------


def test_a_new_request_is_pending_and_not_published(world, app, published):
    login = start(world)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", login.id)
    stored = row(login.id)
    assert stored.status == Status.PENDING
    assert stored.client_id == world.client_id
    assert stored.binding_hash == digest(BINDING)
    assert BINDING not in stored.binding_hash
    assert stored.params == {"response_type": "code", "client_id": world.client_id, "state": "xyz"}
    assert stored.browser_ip == "192.0.2.7"
    assert stored.browser_user_agent == USER_AGENT
    assert stored.renewals == 0
    assert stored.expires_at - stored.created_at == timedelta(
        seconds=app.config["IDP_LOGIN_REQUEST_TTL"]
    )
    assert (stored.device_pk, stored.user_id, stored.scanned_at) == (None, None, None)
    assert published == []


def test_a_long_or_empty_user_agent_is_stored_bounded_or_not_at_all(world):
    long = create_login_request(
        client_id=world.client_id,
        params={},
        binding_secret=BINDING,
        browser=Caller(None, "x" * 5000),
    )
    empty = create_login_request(
        client_id=world.client_id,
        params={},
        binding_secret=BINDING,
        browser=Caller(None, ""),
    )
    assert row(long.id).browser_user_agent == "x" * 1000
    assert row(empty.id).browser_user_agent is None


@pytest.mark.parametrize(
    "request_id",
    ["", "short", "A" * 42, "A" * 44, "A" * 42 + "!", "../" + "A" * 40, "A" * 43],
)
def test_unknown_or_malformed_ids_are_unknown_requests(world, request_id):
    start(world)  # a real request exists, with another id
    with raises(UnknownRequest, "unknown_request", 404):
        find_login_request(request_id)
    with raises(UnknownRequest, "unknown_request", 404):
        scan_login(request_id, device(world.device))


# Scan -----------------------------------------------------------------------------------


def test_scan_moves_pending_to_scanned(world, published):
    login = start(world)
    scanned = scan_login(login.id, device(world.device))
    assert scanned.status == Status.SCANNED
    stored = row(login.id)
    assert stored.status == Status.SCANNED
    assert stored.device_pk == world.device
    assert stored.scanned_at is not None
    assert stored.user_id is None
    assert statuses(published, login.id) == ["scanned"]


def test_the_same_device_scanning_again_gets_the_same_request(world, published):
    login = start(world)
    scan_login(login.id, device(world.device))
    first_scan = row(login.id).scanned_at
    again = scan_login(login.id, device(world.device))
    assert again.id == login.id
    assert again.status == Status.SCANNED
    assert row(login.id).scanned_at == first_scan
    assert statuses(published, login.id) == ["scanned"]  # a retry publishes nothing


def test_another_device_cannot_scan_a_scanned_request(world, published):
    login = start(world)
    scan_login(login.id, device(world.device))
    with raises(AlreadyUsed, "already_used", 409, "another device already scanned this code"):
        scan_login(login.id, device(world.other_device))
    stored = row(login.id)
    assert stored.status == Status.SCANNED
    assert stored.device_pk == world.device
    assert statuses(published, login.id) == ["scanned"]


def test_a_retry_that_overlaps_the_first_scan_still_gets_the_request(world, app, monkeypatch):
    login = start(world)
    real_find = services.find_login_request
    calls = 0

    def find_then_let_the_first_scan_land(request_id: str) -> LoginRequest:
        nonlocal calls
        calls += 1
        found = real_find(request_id)
        if calls == 1:
            db.session.commit()  # end the read (on SQLite it holds the write lock)
            # The phone's first scan lands between the retry's read and its write.
            results, errors = race(
                app, 1, lambda _i, ready: ready() or scan_login(request_id, device(world.device))
            )
            assert [r.status for r in results] == [Status.SCANNED], errors
        return found

    monkeypatch.setattr(services, "find_login_request", find_then_let_the_first_scan_land)
    retried = scan_login(login.id, device(world.device))
    assert retried.status == Status.SCANNED
    assert row(login.id).device_pk == world.device


# Approve and deny -------------------------------------------------------------------------


@pytest.mark.parametrize("decide", [approve_login, deny_login], ids=["approve", "deny"])
def test_deciding_before_the_scan_is_refused(world, published, decide):
    login = start(world)
    with raises(
        InvalidRequest, "invalid_request", 400, "scan the code before approving or denying it"
    ):
        decide(login.id, device(world.device))
    assert row(login.id).status == Status.PENDING
    assert published == []


@pytest.mark.parametrize("decide", [approve_login, deny_login], ids=["approve", "deny"])
def test_only_the_device_that_scanned_may_decide(world, published, decide):
    login = start(world)
    scan_login(login.id, device(world.device))
    with raises(WrongDevice, "wrong_device", 403):
        decide(login.id, device(world.other_device))
    stored = row(login.id)
    assert stored.status == Status.SCANNED
    assert stored.user_id is None
    assert statuses(published, login.id) == ["scanned"]


def test_approve(world, published):
    login = start(world)
    scan_login(login.id, device(world.device))
    approved = approve_login(login.id, device(world.device))
    assert approved.status == Status.APPROVED
    assert approved.user_id == world.user_id
    stored = row(login.id)
    assert stored.status == Status.APPROVED
    assert stored.user_id == world.user_id
    assert stored.device_pk == world.device
    assert stored.decided_at is not None
    assert stored.decided_at >= stored.scanned_at
    assert statuses(published, login.id) == ["scanned", "approved"]


def test_deny(world, published):
    login = start(world)
    scan_login(login.id, device(world.device))
    denied = deny_login(login.id, device(world.device))
    assert denied.status == Status.DENIED
    stored = row(login.id)
    assert stored.status == Status.DENIED
    assert stored.user_id is None
    assert stored.decided_at is not None
    assert statuses(published, login.id) == ["scanned", "denied"]


@pytest.mark.parametrize(
    ("first", "then", "final"),
    [
        (approve_login, deny_login, Status.APPROVED),
        (approve_login, approve_login, Status.APPROVED),
        (deny_login, approve_login, Status.DENIED),
        (deny_login, deny_login, Status.DENIED),
    ],
    ids=["deny-after-approve", "approve-twice", "approve-after-deny", "deny-twice"],
)
def test_a_decision_is_final(world, published, first, then, final):
    login = start(world)
    scan_login(login.id, device(world.device))
    first(login.id, device(world.device))
    with raises(
        AlreadyUsed, "already_used", 409, f"this sign-in request was already {final.value}"
    ):
        then(login.id, device(world.device))
    stored = row(login.id)
    assert stored.status == final
    assert stored.user_id == (world.user_id if final == Status.APPROVED else None)
    assert statuses(published, login.id) == ["scanned", final.value]


@pytest.mark.parametrize(
    ("decide", "decided"),
    [(approve_login, "approved"), (deny_login, "denied")],
    ids=["approve", "deny"],
)
def test_a_decided_request_cannot_be_scanned_again(world, decide, decided):
    login = start(world)
    scan_login(login.id, device(world.device))
    decide(login.id, device(world.device))
    message = f"this sign-in request was already {decided}"
    with raises(AlreadyUsed, "already_used", 409, message):  # the same device: it decided
        scan_login(login.id, device(world.device))
    with raises(AlreadyUsed, "already_used", 409, message):
        scan_login(login.id, device(world.other_device))


# Completion -----------------------------------------------------------------------------


def approved_request(world) -> LoginRequest:
    login = start(world)
    scan_login(login.id, device(world.device))
    approve_login(login.id, device(world.device))
    return login


@pytest.mark.parametrize("secret", [OTHER_BINDING, None, "", BINDING + "x", BINDING.upper()])
def test_completion_needs_the_binding_secret(world, secret):
    login = approved_request(world)
    with raises(BindingMismatch, "binding_mismatch", 403):
        claim_completion(login.id, secret)
    db.session.rollback()
    assert row(login.id).status == Status.APPROVED


@pytest.mark.parametrize("request_id", ["A" * 43, "not an id"])
@pytest.mark.parametrize("secret", [BINDING, None, ""])
def test_an_unknown_request_is_answered_as_another_browsers(world, request_id, secret):
    """The browser endpoints tell a guesser nothing: no such request is a binding mismatch."""
    with raises(BindingMismatch, "binding_mismatch", 403):
        services.find_for_browser(request_id, secret)


def test_completion_before_approval_is_refused(world):
    login = start(world)
    with raises(NotApproved, "not_approved", 409):
        claim_completion(login.id, BINDING)
    scan_login(login.id, device(world.device))
    with raises(NotApproved, "not_approved", 409):
        claim_completion(login.id, BINDING)
    assert row(login.id).status == Status.SCANNED


def test_completion_happens_once(world, published):
    login = approved_request(world)
    claimed = claim_completion(login.id, BINDING)
    assert claimed.status == Status.COMPLETED
    assert claimed.user_id == world.user_id
    db.session.commit()  # the caller's transaction (the view issues the code in it)
    stored = row(login.id)
    assert stored.status == Status.COMPLETED
    assert stored.completed_at is not None
    with raises(AlreadyUsed, "already_used", 409, "this sign-in was already completed"):
        claim_completion(login.id, BINDING)
    assert row(login.id).status == Status.COMPLETED
    with raises(AlreadyUsed, "already_used", 409, "this sign-in request was already completed"):
        scan_login(login.id, device(world.device))  # the phone that approved it, scanning again
    # The claim is published once committed (the view rolls it back if no code is issued).
    assert statuses(published, login.id) == ["scanned", "approved", "completed"]


def test_completion_is_part_of_the_callers_transaction(world):
    login = approved_request(world)
    assert claim_completion(login.id, BINDING).status == Status.COMPLETED
    db.session.rollback()  # e.g. issuing the code failed
    assert row(login.id).status == Status.APPROVED
    assert claim_completion(login.id, BINDING).status == Status.COMPLETED
    db.session.commit()
    assert row(login.id).status == Status.COMPLETED


def test_a_denied_request_is_returned_as_it_is(world, published):
    login = start(world)
    scan_login(login.id, device(world.device))
    deny_login(login.id, device(world.device))
    for _ in range(2):
        claimed = claim_completion(login.id, BINDING)
        assert claimed.status == Status.DENIED
        db.session.commit()
        assert row(login.id).status == Status.DENIED
    with raises(BindingMismatch, "binding_mismatch", 403):
        claim_completion(login.id, OTHER_BINDING)
    assert statuses(published, login.id) == ["scanned", "denied"]


# Expiry ---------------------------------------------------------------------------------


def test_scanning_an_expired_request_expires_it(world, published):
    login = start(world)
    expire(login.id)
    with raises(Expired, "expired", 410):
        scan_login(login.id, device(world.device))
    stored = row(login.id)
    assert stored.status == Status.EXPIRED
    assert stored.device_pk is None
    assert statuses(published, login.id) == ["expired"]
    # Expired stays expired, and is published once.
    with raises(Expired, "expired", 410):
        scan_login(login.id, device(world.other_device))
    with raises(Expired, "expired", 410):
        claim_completion(login.id, BINDING)
    assert row(login.id).status == Status.EXPIRED
    assert statuses(published, login.id) == ["expired"]


@pytest.mark.parametrize(
    ("act", "final"),
    [
        (lambda world, login: scan_login(login.id, device(world.device)), Status.EXPIRED),
        (lambda world, login: approve_login(login.id, device(world.device)), Status.EXPIRED),
        (lambda world, login: deny_login(login.id, device(world.device)), Status.EXPIRED),
        (lambda world, login: approve_login(login.id, device(world.other_device)), Status.EXPIRED),
        # claim_completion refuses without writing (a page's socket or a scan expires it).
        (lambda world, login: claim_completion(login.id, BINDING), Status.SCANNED),
    ],
    ids=["rescan", "approve", "deny", "approve-other-device", "complete"],
)
def test_a_scanned_request_that_expired_cannot_go_on(world, published, act, final):
    login = start(world)
    scan_login(login.id, device(world.device))
    expire(login.id)
    with raises(Expired, "expired", 410):
        act(world, login)
    db.session.rollback()
    stored = row(login.id)
    assert stored.status == final
    assert stored.user_id is None
    assert stored.decided_at is None
    expected = ["scanned", "expired"] if final == Status.EXPIRED else ["scanned"]
    assert statuses(published, login.id) == expected


def set_times(request_id: str, *, expires_ago: float, decided_ago: float) -> None:
    now = utcnow()
    db.session.execute(
        update(LoginRequest)
        .where(LoginRequest.id == request_id)
        .values(
            expires_at=now - timedelta(seconds=expires_ago),
            decided_at=now - timedelta(seconds=decided_ago),
        )
    )
    db.session.commit()


@pytest.mark.parametrize(
    ("expires_ago", "decided_ago"),
    [
        pytest.param(1, 0, id="code-expired-just-approved"),
        pytest.param(-60, 3600, id="approved-long-ago-code-still-valid"),
    ],
)
def test_an_approval_can_be_completed_while_the_code_or_the_grace_lasts(
    world, app, expires_ago, decided_ago
):
    # The grace after approval is IDP_CODE_TTL seconds (50 by default).
    assert app.config["IDP_CODE_TTL"] == 50
    login = approved_request(world)
    set_times(login.id, expires_ago=expires_ago, decided_ago=decided_ago)
    assert claim_completion(login.id, BINDING).status == Status.COMPLETED
    db.session.commit()
    assert row(login.id).status == Status.COMPLETED


def test_an_approval_not_used_in_time_is_refused(world, app):
    login = approved_request(world)
    set_times(login.id, expires_ago=1, decided_ago=app.config["IDP_CODE_TTL"] + 5)
    with raises(Expired, "expired", 410, "this approval was not used in time: sign in again"):
        claim_completion(login.id, BINDING)
    db.session.rollback()
    assert row(login.id).status == Status.APPROVED  # refused, not rewritten


# Broker: what a waiting page receives ---------------------------------------------------------


def status_of(message: dict[str, Any] | None) -> str | None:
    """The status a message announces; it also carries its publishing time, ``at``."""
    assert message is not None, "no message arrived"
    assert set(message) == {"status", "at"}
    assert abs(message["at"] - time.time()) < 60
    return message["status"]


def subscribe(app, request_id: str):
    """Subscribe, then wait until the broker really delivers on this channel.

    The Redis broker subscribes asynchronously; a probe message, sent until it comes back,
    proves the subscription is live before the test relies on it.
    """
    broker = app.extensions["idp.broker"]
    subscription = broker.subscribe(channel(request_id))
    for _ in range(100):
        broker.publish(channel(request_id), {"probe": True})
        message = subscription.get(timeout=0.1)
        if message == {"probe": True}:
            while subscription.get(timeout=0.2) is not None:  # late duplicate probes
                pass
            return subscription
    raise AssertionError("the subscription never received a message")


def test_a_subscriber_receives_the_statuses_in_order(world, app):
    login = start(world)
    subscription = subscribe(app, login.id)
    try:
        scan_login(login.id, device(world.device))
        scan_login(login.id, device(world.device))  # a retry: nothing new
        approve_login(login.id, device(world.device))
        claim_completion(login.id, BINDING)
        db.session.commit()
        assert status_of(subscription.get(timeout=5)) == "scanned"
        assert status_of(subscription.get(timeout=5)) == "approved"
        assert status_of(subscription.get(timeout=5)) == "completed"
        assert subscription.get(timeout=0.5) is None
    finally:
        subscription.close()


def test_a_subscriber_receives_expired(world, app):
    login = start(world)
    subscription = subscribe(app, login.id)
    try:
        expire(login.id)
        with raises(Expired, "expired", 410):
            scan_login(login.id, device(world.device))
        assert status_of(subscription.get(timeout=5)) == "expired"
        assert subscription.get(timeout=0.5) is None
    finally:
        subscription.close()


def test_a_subscriber_of_another_request_hears_nothing(world, app):
    watched = start(world)
    other = start(world)
    subscription = subscribe(app, watched.id)
    try:
        scan_login(other.id, device(world.device))
        approve_login(other.id, device(world.device))
        assert subscription.get(timeout=0.5) is None
    finally:
        subscription.close()


# Races ----------------------------------------------------------------------------------------


def race(
    app, count: int, action: Callable[[int, Callable[[], Any]], Any]
) -> tuple[list[Any], list[BaseException]]:
    """Run ``action(i, ready)`` in ``count`` threads, each in its own app context.

    Each thread prepares (loads its rows, ends its transaction), then calls ``ready()``: a
    barrier that releases all the threads at once into the transition under test.
    """
    barrier = threading.Barrier(count, timeout=60)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        with app.app_context():
            try:
                result = action(i, barrier.wait)
            except BaseException as error:  # collected and checked by the test
                with lock:
                    errors.append(error)
            else:
                with lock:
                    results.append(result)

    threads = [threading.Thread(target=run, args=(i,), name=f"racer-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a racing thread hung"
    return results, errors


def test_racing_approvals_exactly_one_wins(world, app, published):
    login = start(world)
    scan_login(login.id, device(world.device))
    db.session.close()  # the test's own session holds no transaction (SQLite write lock)

    def approve(_i: int, ready: Callable[[], Any]) -> str:
        phone = device(world.device)
        db.session.commit()  # end the read transaction before the start line
        ready()
        return approve_login(login.id, phone).status

    results, errors = race(app, THREADS, approve)
    assert results == [Status.APPROVED]
    assert len(errors) == THREADS - 1
    for error in errors:
        assert type(error) is AlreadyUsed, repr(error)
        assert error.code == "already_used"
        # Seen approved when reading the row, or when the compare-and-set found it changed.
        assert error.description in {
            "this sign-in request was already approved",
            "this sign-in request is already approved",
        }
    stored = row(login.id)
    assert stored.status == Status.APPROVED
    assert stored.user_id == world.user_id
    assert statuses(published, login.id) == ["scanned", "approved"]


def test_racing_completions_exactly_one_wins(world, app, published):
    login = approved_request(world)
    db.session.close()

    def complete(_i: int, ready: Callable[[], Any]) -> str:
        ready()
        claimed = claim_completion(login.id, BINDING)
        db.session.commit()  # as the view does, once the code is issued
        return claimed.status

    results, errors = race(app, THREADS, complete)
    assert results == [Status.COMPLETED]
    assert len(errors) == THREADS - 1
    for error in errors:
        assert type(error) is AlreadyUsed, repr(error)
        assert error.description == "this sign-in was already completed"
    assert row(login.id).status == Status.COMPLETED
    assert statuses(published, login.id) == ["scanned", "approved", "completed"]  # once


def test_racing_scans_by_different_devices_exactly_one_wins(world, app, published):
    login = start(world)
    db.session.close()

    def scan(i: int, ready: Callable[[], Any]) -> int:
        phone = device(world.spare_devices[i])
        db.session.commit()
        ready()
        return scan_login(login.id, phone).device_pk

    results, errors = race(app, THREADS, scan)
    assert len(results) == 1
    assert len(errors) == THREADS - 1
    for error in errors:
        assert type(error) is AlreadyUsed, repr(error)
    [winner] = results
    assert winner in world.spare_devices
    stored = row(login.id)
    assert stored.status == Status.SCANNED
    assert stored.device_pk == winner
    assert statuses(published, login.id) == ["scanned"]


def test_approve_racing_deny_exactly_one_wins(world, app, published):
    """The phone's approve and deny arrive at once (a double tap): one decision stands."""
    login = start(world)
    scan_login(login.id, device(world.device))
    db.session.close()

    def decide(i: int, ready: Callable[[], Any]) -> str:
        phone = device(world.device)
        db.session.commit()
        ready()
        return (approve_login if i % 2 else deny_login)(login.id, phone).status

    results, errors = race(app, THREADS, decide)
    assert len(results) == 1
    assert len(errors) == THREADS - 1
    assert all(type(error) is AlreadyUsed for error in errors), errors
    [winner] = results
    assert row(login.id).status == winner
    assert statuses(published, login.id) == ["scanned", winner]


@pytest.mark.parametrize("lifetime", [0.05, 0.15, 0.4])
def test_approve_racing_expiry_exactly_one_wins(world, app, published, lifetime):
    """Approvals arrive around the moment the request expires while other workers expire
    it: it ends approved or expired, never both, with one message for the outcome."""
    login = start(world)
    scan_login(login.id, device(world.device))
    db.session.execute(
        update(LoginRequest)
        .where(LoginRequest.id == login.id)
        .values(expires_at=utcnow() + timedelta(seconds=lifetime))
    )
    db.session.commit()
    db.session.close()

    def act(i: int, ready: Callable[[], Any]) -> tuple[str, Any]:
        phone = device(world.device)
        db.session.commit()
        ready()
        if i % 2:
            time.sleep(0.05 + 0.02 * i)  # spread the approvals around the expiry moment
            return ("approve", approve_login(login.id, phone).status)
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            if expire_login(login.id):
                return ("expire", True)
            time.sleep(0.005)
        return ("expire", False)

    results, errors = race(app, THREADS, act)
    approvals = [r for r in results if r[0] == "approve"]
    expiries = [r for r in results if r == ("expire", True)]
    assert all(type(error) in (Expired, AlreadyUsed) for error in errors), errors
    final = row(login.id).status
    if final == Status.APPROVED:
        assert len(approvals) == 1
        assert expiries == []
    else:
        assert final == Status.EXPIRED
        assert approvals == []
        # One writer made the expiry: an expirer, or an approval that found the request
        # past its lifetime (it writes the expiry, then answers Expired).
        assert len(expiries) == 1 or any(type(error) is Expired for error in errors)
        assert len(expiries) <= 1
    assert statuses(published, login.id) == ["scanned", final]  # one message: one writer
