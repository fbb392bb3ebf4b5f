"""How near the phone is to the browser that started a sign-in: the relay's tell.

In a relayed QR sign-in the attacker's browser shows the QR code to the victim, whose
phone approves from wherever the victim is. So the phone's own request is compared
with the browser's (each address as the IdP saw it, after ``IDP_TRUSTED_PROXIES``):

- ``same_network``: the same address, or the same /24 (IPv4) or /48 (IPv6);
- ``nearby``: another network in the same country (with ``IDP_GEOIP_DATABASE``);
- ``different_country``: the GeoIP database places them in two countries;
- ``different_network``: different networks, and no database says more;
- ``unknown``: an address is missing or not an IP address.

This is evidence, not proof: two people behind one carrier-grade NAT share a network,
and a person on a laptop's Wi-Fi and a phone on mobile data are on two. The phone says
what was found, in plain words; docs/security.md says what it does and does not stop.

What is done with it is a policy (:func:`policy_for`: the stricter of ``IDP_PROXIMITY``
and the client's own): ``off``, nothing is measured or shown; ``warn``, the phone shows
the verdict; ``require_same_network``, only ``same_network`` may approve (anything else,
``unknown`` included, is refused: when in doubt, refuse). The approval is judged with the
approving request's own address (:func:`refusal`), since the phone may have moved since
it scanned.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import current_app
from flask_babel import gettext

from idp import geoip

if TYPE_CHECKING:
    from idp.oauth.models import Client
    from idp.qrlogin.models import LoginRequest

#: The prefix lengths taken as "one network" (a home, an office, a café).
PREFIX = {4: 24, 6: 48}

OFF, WARN, REQUIRE_SAME_NETWORK = "off", "warn", "require_same_network"
#: The policies, weakest first: a client may ask for a stricter one than the server's.
POLICIES = (OFF, WARN, REQUIRE_SAME_NETWORK)


@dataclass(frozen=True)
class Proximity:
    verdict: str
    facts: dict[str, Any]

    def allowed(self, policy: str) -> bool:
        """Whether a phone this near may approve under ``policy``."""
        return policy != REQUIRE_SAME_NETWORK or self.verdict == "same_network"

    def view(self, policy: str = WARN, *, device: bool = False) -> dict[str, Any]:
        """The scan answer's ``proximity``: the verdict, the phone's sentence (the refusal,
        when the policy will not let this phone approve), the facts, the policy and whether
        it allows an approval from here. ``device``: what asks is a device (RFC 8628), not
        a computer's browser, and the sentences say so."""
        allowed = self.allowed(policy)
        return {
            "verdict": self.verdict,
            "message": message(self.verdict, device=device)
            if allowed
            else refusal_message(device=device),
            **self.facts,
            "policy": policy,
            "allowed": allowed,
        }


def policy_for(client: Client) -> str:
    """The proximity policy of a client's sign-ins: the stricter of ``IDP_PROXIMITY`` and
    the client's own (``clients.proximity``; NULL follows the server). A client may raise
    the bar, never lower it; a value this code does not know counts as the strictest."""
    configured = current_app.config["IDP_PROXIMITY"]
    own = client.proximity
    if own is None:
        return str(configured)
    if own not in POLICIES:
        return REQUIRE_SAME_NETWORK
    return max(configured, own, key=POLICIES.index)


def for_phone(login: LoginRequest, phone_ip: str | None) -> dict[str, Any] | None:
    """The scan answer's ``proximity`` for a phone at ``phone_ip``: ``None`` when the
    policy is ``off`` (nothing measured, nothing shown)."""
    policy = policy_for(login.client)
    if policy == OFF or not _has_asker(login):
        return None
    return assess(login.browser_ip, phone_ip).view(policy, device=login.kind == "device")


def _has_asker(login: LoginRequest) -> bool:
    """Whether someone near the user asks: a browser or a device does (its address is
    ``browser_ip``); a backchannel request comes from the site's server, whose address
    says nothing about where the user is."""
    return login.kind != "backchannel"


def refusal(login: LoginRequest, phone_ip: str | None) -> Proximity | None:
    """What refuses an approval from ``phone_ip`` (the approving request's own address),
    or ``None`` if the policy lets it through."""
    policy = policy_for(login.client)
    if policy != REQUIRE_SAME_NETWORK or not _has_asker(login):
        return None
    found = assess(login.browser_ip, phone_ip)
    return None if found.allowed(policy) else found


def network(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The /24 or /48 an address is in, as text (``"192.0.2.0/24"``)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(ipaddress.ip_network(f"{address}/{PREFIX[address.version]}", strict=False))


def assess(browser_ip: str | None, phone_ip: str | None) -> Proximity:
    """Compare the browser's address with the phone's (GeoIP countries when configured)."""
    try:
        browser = ipaddress.ip_address(browser_ip or "")
        phone = ipaddress.ip_address(phone_ip or "")
    except ValueError:
        return Proximity("unknown", {"same_address": False})
    facts: dict[str, Any] = {
        "same_address": browser == phone,
        "browser_network": network(browser),
        "phone_network": network(phone),
    }
    if browser == phone or facts["browser_network"] == facts["phone_network"]:
        return Proximity("same_network", facts)
    countries = geoip.country_code(str(browser)), geoip.country_code(str(phone))
    facts["browser_country"], facts["phone_country"] = countries
    if all(countries):
        return Proximity("nearby" if countries[0] == countries[1] else "different_country", facts)
    return Proximity("different_network", facts)


def message(verdict: str, *, device: bool = False) -> str:
    """What the phone says, first, in the phone's language (of a device's sign-in, with
    ``device``)."""
    if device and verdict in ("nearby", "different_network", "different_country"):
        return {
            "nearby": gettext(
                "This device is on another network in your phone's country. Approve only if"
                " the device is in front of you."
            ),
            "different_network": gettext(
                "This device is on a different network than your phone. Approve only if the"
                " device is in front of you."
            ),
            "different_country": gettext(
                "This device is in another country than your phone is in. Approve only if"
                " the device is in front of you."
            ),
        }[verdict]
    return {
        "same_network": gettext("This sign-in was started on the same network as your phone."),
        "nearby": gettext(
            "This sign-in was started on another network in your phone's country. Approve"
            " only if you are at that computer."
        ),
        "different_network": gettext(
            "This sign-in was started on a different network than your phone. Approve only"
            " if you are at that computer."
        ),
        "different_country": gettext(
            "This sign-in was started in another country than your phone is in. Approve only"
            " if you are at that computer."
        ),
        "unknown": gettext("Where this sign-in was started cannot be compared with your phone."),
    }[verdict]


def refusal_message(*, device: bool = False) -> str:
    """What the phone says instead when the policy will not let it approve."""
    if device:
        return gettext(
            "This site accepts sign-ins only from a phone on the same network as the device,"
            " and this phone is not on it: this sign-in can only be denied. If the device is"
            " in front of you, connect this phone to its network (its Wi-Fi), then scan its"
            " code again."
        )
    return gettext(
        "This site accepts sign-ins only from a phone on the same network as the computer,"
        " and this phone is not on it: this sign-in can only be denied. If you are at that"
        " computer, connect this phone to its network (its Wi-Fi), then scan the code again."
    )
