"""When an authorization request may be answered from the browser's IdP session: a pure
function of the session, the parameters and the clients approved in the session
(idp.sso.services.session_satisfies)."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from idp.oauth.checks import max_age_seconds
from idp.sso.services import session_satisfies

NOW = datetime(2026, 1, 1, 12, 0, 0)
SESSION = SimpleNamespace(
    auth_time=NOW - timedelta(seconds=300), user=SimpleNamespace(subject="s1")
)


def satisfies(
    params: dict[str, str], hinted: dict | None = None, approved: frozenset | None = None
) -> bool:
    return session_satisfies(
        SESSION,  # type: ignore[arg-type]
        params,
        approved=approved,
        hinted=hinted,
        now=NOW,
    )


def test_per_client_only_the_clients_approved_in_the_session_are_answered():
    approved = frozenset({"a", "b"})
    assert satisfies({"client_id": "a"}, approved=approved)
    assert satisfies({"client_id": "b", "prompt": "none"}, approved=approved)
    assert not satisfies({"client_id": "c"}, approved=approved)
    assert not satisfies({"client_id": "c", "prompt": "none"}, approved=approved)
    assert not satisfies({}, approved=approved)  # no client named: none approved
    assert not satisfies({"client_id": "a"}, approved=frozenset())
    # The other rules still hold for an approved client.
    assert not satisfies({"client_id": "a", "prompt": "login"}, approved=approved)
    assert not satisfies({"client_id": "a", "max_age": "299"}, approved=approved)
    assert not satisfies({"client_id": "a"}, hinted={"sub": "someone else"}, approved=approved)


def test_with_every_client_approved_any_client_is_answered():
    assert satisfies({"client_id": "c"}, approved=None)


def test_a_plain_request_is_answered_from_the_session():
    assert satisfies({})
    assert satisfies({"prompt": "none", "max_age": ""})


def test_prompt_login_asks_for_a_scan():
    assert not satisfies({"prompt": "login"})
    assert not satisfies({"prompt": "consent login"})


@pytest.mark.parametrize(("max_age", "answered"), [("300", True), ("299", False), ("0", False)])
def test_max_age_bounds_the_sign_ins_age(max_age, answered):
    assert satisfies({"max_age": max_age}) is answered


@pytest.mark.parametrize("max_age", ["-1", "1.5", "١٢٣", "9" * 5000])
def test_a_max_age_that_is_no_whole_number_is_not_answered_from_the_session(max_age):
    assert max_age_seconds(max_age) is None
    assert not satisfies({"max_age": max_age})


def test_an_id_token_hint_must_name_the_sessions_user():
    assert satisfies({}, hinted={"sub": "s1"})
    assert not satisfies({}, hinted={"sub": "someone else"})
    assert not satisfies({}, hinted={})  # a hint we did not sign
