"""Our rules for an authorization request, beyond Authlib's: each one a named check.

Authlib validates the request, then runs these (``AuthorizationChecks``, an extension
of the authorization-code grant) in order; a failure is an error response that goes
back to the client when its ``redirect_uri`` is known (RFC 6749 §4.1.2.1). PKCE's rule
is ``idp.oauth.grants.RequiredS256``; the one check that must run before Authlib (it
quotes what it refuses) is ``idp.qrlogin.views.check_quotable``.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oidc.core.errors import RequestNotSupportedError, RequestURINotSupportedError


def max_age_seconds(value: str) -> int | None:
    """``max_age`` as a whole number of seconds, or ``None`` if it is not one."""
    if not (value.isascii() and value.isdigit()):
        return None
    try:
        return int(value)
    except ValueError:  # more digits than Python converts
        return None


#: Parameters we store, and the longest value of each.
PARAMETER_LIMITS = {"nonce": 255, "state": 2000, "login_hint": 255, "max_age": 10}


def check_lengths(grant: Any, redirect_uri: str) -> None:
    """Refuse parameters longer than we store (an error, not a 500)."""
    data = grant.request.payload.data
    for name, limit in PARAMETER_LIMITS.items():
        if len(data.get(name) or "") > limit:
            raise InvalidRequestError(f"'{name}' is longer than {limit} characters")


def check_max_age(grant: Any, redirect_uri: str) -> None:
    """``max_age``, when sent, is a whole number of seconds."""
    max_age = grant.request.payload.data.get("max_age")
    if max_age is not None and max_age_seconds(max_age) is None:
        raise InvalidRequestError("'max_age' must be a whole number of seconds")


def check_no_request_object(grant: Any, redirect_uri: str) -> None:
    """Request objects are not supported, and say so (OIDC Core §6)."""
    data = grant.request.payload.data
    if "request" in data:
        raise RequestNotSupportedError(redirect_uri=redirect_uri)
    if "request_uri" in data:
        raise RequestURINotSupportedError(redirect_uri=redirect_uri)


class AuthorizationChecks:
    """Our rules for an authorization request, one named check each, run in this order
    once Authlib has validated the request's payload.

    One hook runs them all: Authlib keeps a grant's hooks in a set, so hooks registered
    one by one would run in an order of its choosing (as ours do beside its PKCE and
    nonce hooks)."""

    CHECKS = (check_lengths, check_max_age, check_no_request_object)

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.run)

    def run(self, grant: Any, redirect_uri: str) -> None:
        """Every check, in order; the first that fails answers."""
        for check in self.CHECKS:
            check(grant, redirect_uri)
