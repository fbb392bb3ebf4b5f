"""Users: creation, password checks, and the claims released per scope."""

from __future__ import annotations

import functools
import os
import re
import secrets
import sys
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, or_, select

from idp import audit, db
from idp.accounts.models import User
from idp.errors import InvalidCredentials, InvalidRequest
from idp.terminal import has_control_characters

_hasher = PasswordHasher()  # argon2id, the library's current defaults


@functools.cache
def _dummy_hash() -> str:
    """A real hash of a throwaway password, verified when the user does not exist so
    that a wrong username takes as long as a wrong password. Made on first use, not at
    import: every ``idp`` command would pay for it otherwise."""
    return _hasher.hash(secrets.token_urlsafe(16))


#: Usernames are 1-150 ASCII letters, digits and ``_ . @ -``: no spaces, no control
#: characters (they are printed in audit lines, logs and on phones).
USERNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,150}")
USERNAME_RULE = "usernames are 1-150 letters, digits or _ . @ -"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8


def check_username(username: object) -> str:
    """Return ``username`` if it follows the rule (``USERNAME_RE``), else raise
    ``InvalidRequest``. Checked before a username is stored, audited or looked up."""
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise InvalidRequest(USERNAME_RULE)
    return username


def create_user(username: str, password: str, *, email: str | None, name: str | None) -> User:
    """Create a user in the caller's transaction; refuse bad or taken usernames and
    short passwords."""
    check_username(username)
    if email is not None and (not EMAIL_RE.match(email) or has_control_characters(email)):
        raise InvalidRequest(f"{email!r} is not an email address")
    if name is not None and has_control_characters(name):
        raise InvalidRequest("a name must not contain control characters")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest(f"passwords have at least {MIN_PASSWORD_LENGTH} characters")
    if db.session.scalar(select(User.id).where(User.username == username)) is not None:
        raise InvalidRequest(f"the username {username!r} is taken")
    user = User(
        subject=secrets.token_urlsafe(24),
        username=username,
        email=email,
        name=name,
        password_hash=_hasher.hash(password),
    )
    db.session.add(user)
    audit.record("user.created", username=username)
    return user


def authenticate(username: str, password: str) -> User:
    """Return the user whose password this is, or raise ``InvalidCredentials``."""
    user = db.session.scalar(select(User).where(User.username == username))
    # The check yields under gevent: on SQLite the read above holds the one write lock,
    # and another request waiting for it would block the whole process.
    db.release_before_yield()
    try:
        _off_the_event_loop(_verify, user.password_hash if user else None, password)
    except (VerificationError, InvalidHashError):
        raise InvalidCredentials() from None
    if user is None:
        raise InvalidCredentials()
    return user


def _verify(password_hash: str | None, password: str) -> None:
    """Check ``password`` against ``password_hash`` (the dummy hash when there is none)."""
    _hasher.verify(_dummy_hash() if password_hash is None else password_hash, password)


#: Threads that check passwords under gevent: argon2id is made to be slow (~50 ms of CPU
#: each), and on the event loop eight wrong passwords at once stalled every other request
#: for seconds. argon2-cffi releases the GIL, so these run beside the loop; more than the
#: cores would only queue inside the kernel instead of here.
PASSWORD_THREADS = max(1, os.cpu_count() or 1)
_pools: dict[int, Any] = {}  # pid -> gevent ThreadPool (a forked worker makes its own)


def _off_the_event_loop(function: Any, *args: Any) -> Any:
    """Run a CPU-heavy ``function(*args)`` where it does not stall other requests: under
    gevent, on a bounded pool of real threads (only the calling greenlet waits; an error
    is raised here); elsewhere (threads, the CLI), right here."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return function(*args)
    pool = _pools.get(os.getpid())
    if pool is None:
        from gevent.threadpool import ThreadPool

        pool = _pools[os.getpid()] = ThreadPool(PASSWORD_THREADS)
    return pool.apply(function, args)


def users_named(name: str) -> set[int]:
    """The ids of the users whose username or email is ``name``, ignoring case: who an
    OIDC ``login_hint`` names (sites send either). Empty when it names nobody."""
    folded = name.strip().lower()
    if not folded:
        return set()
    if folded.isascii():
        return set(
            db.session.scalars(
                select(User.id).where(
                    or_(func.lower(User.username) == folded, func.lower(User.email) == folded)
                )
            )
        )
    # The databases' lower() folds ASCII only (SQLite; PostgreSQL as its locale says), and
    # usernames are ASCII: find the addresses that match but for the other letters (one
    # character each), and compare those here.
    pattern = "".join(("\\" + c if c in "%_\\" else c) if c.isascii() else "_" for c in folded)
    alike = select(User.id, User.email).where(func.lower(User.email).like(pattern, escape="\\"))
    return {
        user_id for user_id, email in db.session.execute(alike) if (email or "").lower() == folded
    }


def user_claims(user: User, scopes: set[str]) -> dict[str, object]:
    """The claims released for these scopes (OIDC Core §5.4)."""
    claims: dict[str, object] = {"sub": user.subject}
    if "profile" in scopes:
        claims["name"] = user.name or user.username
        claims["preferred_username"] = user.username
    if "email" in scopes and user.email:
        claims["email"] = user.email
        # Set by an admin who created the account; no verification mail exists yet.
        claims["email_verified"] = False
    return claims
