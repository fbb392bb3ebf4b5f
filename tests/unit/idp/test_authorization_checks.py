"""Our authorization-request checks (idp.oauth.checks) run in their stated order.

Authlib keeps a grant's hooks in a set, so hooks registered one by one run in an order
of its choosing; a request breaking two rules must still get the first rule's error."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oidc.core.errors import RequestNotSupportedError

from idp.oauth.checks import AuthorizationChecks


class Grant:
    """A grant whose hooks run last-registered first: an order a set may give."""

    def __init__(self, data: dict[str, str]) -> None:
        self.request = SimpleNamespace(payload=SimpleNamespace(data=data))
        self.hooks: list[Any] = []

    def register_hook(self, hook_type: str, hook: Any) -> None:
        assert hook_type == "after_validate_authorization_request_payload"
        self.hooks.append(hook)

    def validate(self) -> None:
        for hook in reversed(self.hooks):
            hook(self, "https://rp.example/callback")


def test_a_request_breaking_several_rules_gets_the_first_rules_error():
    grant = Grant({"max_age": "ten", "request": "x"})
    AuthorizationChecks()(grant)
    with pytest.raises(InvalidRequestError, match="'max_age' must be a whole number"):
        grant.validate()


def test_too_long_comes_before_malformed():
    grant = Grant({"max_age": "x" * 11})
    AuthorizationChecks()(grant)
    with pytest.raises(InvalidRequestError, match="'max_age' is longer than 10"):
        grant.validate()


def test_a_request_object_alone_is_not_supported():
    grant = Grant({"request": "x"})
    AuthorizationChecks()(grant)
    with pytest.raises(RequestNotSupportedError):
        grant.validate()
    AuthorizationChecks()(clean := Grant({"max_age": "30"}))
    clean.validate()  # nothing to refuse
