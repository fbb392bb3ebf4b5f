"""Number matching: after the scan the page shows two digits, and the phone must pick
them among three to approve.

It shows that the person approving sees a screen with this sign-in on it, which stops
an approval given out of habit. It does not stop a live relay: an attacker who shows
his own page's QR code on a phishing page sees the digits arrive on his own page and
can show them too. The relay's tell is the network (``proximity``).
Off by default; on for every client with ``IDP_NUMBER_MATCHING``, or per client
(``idp clients create --number-matching``). A wrong pick denies the sign-in at once,
so guessing gets one try in three, once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import current_app

from idp.qrlogin.models import LoginRequest


def required(login: LoginRequest) -> bool:
    """Whether this sign-in needs number matching: only a browser's, whose page shows the
    number (a device shows its user code to compare, a backchannel request its site's
    binding message)."""
    if login.kind not in (None, "browser"):
        return False
    return bool(current_app.config["IDP_NUMBER_MATCHING"] or login.client.number_matching)


def new_number() -> str:
    """Two digits, 10-99, drawn when the request is scanned."""
    return str(10 + secrets.randbelow(90))


def choices(login: LoginRequest) -> list[str]:
    """The right number and two others, in ascending order: the same for every call on
    one request (a phone that scans again sees the same three), unguessable to others."""
    assert login.match_number is not None
    key = current_app.config["IDP_SECRET_KEY"].encode()
    stream = hmac.new(key, login.id.encode(), hashlib.sha256).digest()
    picks = {login.match_number}
    for byte in stream:
        if len(picks) == 3:
            break
        picks.add(str(10 + byte % 90))
    candidate = 10
    while len(picks) < 3:  # 32 bytes always suffice in practice; this keeps it certain
        picks.add(str(candidate))
        candidate += 1
    return sorted(picks)


def matches(login: LoginRequest, number: str) -> bool:
    """Whether the phone picked the number the page shows."""
    assert login.match_number is not None
    return hmac.compare_digest(number.encode(), login.match_number.encode())
