"""Browser plumbing, written once: our cookies, the binding secret, the same-origin
check, ``no_store``, the pages' Content-Security-Policy, and :class:`Caller`.

Only views read the request and write cookies. They hand services what those hold:
a :class:`Caller` (the sender's IP address and user agent) and the secrets in the cookies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from flask import current_app, request
from werkzeug.wrappers import Response

from idp.errors import ForeignOrigin

#: Binds a browser to the login requests its pages started.
BINDING_COOKIE = "idp_binding"
#: The browser's IdP session (single sign-on).
SESSION_COOKIE = "idp_sso"
#: A binding secret: 32 random bytes, base64url.
BINDING_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")

#: The pages' policy: only our own scripts, styles and images; nothing may frame them.
PAGE_POLICY: dict[str, tuple[str, ...]] = {
    "default-src": ("'none'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:"),
    "connect-src": ("'self'",),
    "manifest-src": ("'self'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
    "base-uri": ("'none'",),
}


@dataclass(frozen=True)
class Caller:
    """Who sent the request a service acts on, as the audit log and a login request
    record it. Made at the view edge; a command-line service has none."""

    ip: str | None
    user_agent: str | None = None

    @classmethod
    def from_request(cls) -> Caller:
        """The sender of the current request (its address after ``IDP_TRUSTED_PROXIES``)."""
        return cls(request.remote_addr, request.user_agent.string)


def secure_cookies() -> bool:
    """On an https issuer every cookie is Secure and named ``__Host-``: sent over https
    only, and bound to this host (no sibling domain can set it)."""
    return current_app.config["IDP_ISSUER"].startswith("https://")


def cookie_name(name: str) -> str:
    """The name one of our cookies has on this issuer."""
    return f"__Host-{name}" if secure_cookies() else name


def read_cookie(name: str) -> str | None:
    """The value this browser sent for one of our cookies."""
    return request.cookies.get(cookie_name(name))


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    """Set one of our cookies: HttpOnly, SameSite=Lax, for the whole host."""
    response.set_cookie(
        cookie_name(name),
        value,
        max_age=max_age,
        httponly=True,
        secure=secure_cookies(),
        samesite="Lax",
        path="/",
    )


def delete_cookie(response: Response, name: str) -> None:
    """Tell the browser to drop one of our cookies."""
    response.delete_cookie(cookie_name(name), path="/", secure=secure_cookies())


def binding_secret() -> str | None:
    """This browser's binding secret, if it sent a well-formed one."""
    value = read_cookie(BINDING_COOKIE)
    return value if value and BINDING_RE.match(value) else None


def issuer_origin() -> str:
    """The issuer's origin, ``scheme://host[:port]``."""
    issuer = urlsplit(current_app.config["IDP_ISSUER"])
    return f"{issuer.scheme}://{issuer.netloc}"


def check_same_origin() -> None:
    """Refuse state-changing browser requests and sockets from other origins."""
    if request.headers.get("Origin") != issuer_origin():
        raise ForeignOrigin()


#: Any response: Flask's, or one Authlib or ``redirect`` made (werkzeug's).
AnyResponse = TypeVar("AnyResponse", bound=Response)


def no_store(response: AnyResponse) -> AnyResponse:
    """Forbid every cache to keep this response (it holds a code, a token, a secret, or a
    page that is one browser's)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def content_security_policy(**extra: Iterable[str]) -> str:
    """The pages' policy (:data:`PAGE_POLICY`), with ``extra`` sources added to a
    directive: ``img_src=[origin]`` adds ``origin`` to ``img-src``."""
    directives = {name: list(sources) for name, sources in PAGE_POLICY.items()}
    for key, sources in extra.items():
        directives[key.replace("_", "-")].extend(sources)  # a KeyError: no such directive
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())
