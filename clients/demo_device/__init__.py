"""A demo "TV / command line" that signs in with QR-IdP's device authorization grant
(RFC 8628): it asks for a code, shows its QR code and the code in the terminal, polls the
token endpoint while the user's phone decides, and prints the validated ID token's claims.

It is a relying party like any other and uses only the IdP's public endpoints: discovery,
``/device_authorization``, ``/token`` and the JWKS.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import qrcode
import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TIMEOUT = 10


class DeviceFlowError(Exception):
    """The sign-in did not succeed: denied, expired, refused, or the IdP unreachable."""


@dataclass
class DeviceSignIn:
    """One run of the device flow against ``issuer`` as the public client ``client_id``."""

    issuer: str
    client_id: str
    scope: str = "openid profile email"
    client_secret: str | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)

    def run(self) -> dict[str, Any]:
        """Start, show, poll; the ID token's claims once the phone approved."""
        metadata = self._json(self.session.get(self._discovery(), timeout=TIMEOUT))
        endpoint = metadata.get("device_authorization_endpoint")
        if not endpoint:
            raise DeviceFlowError(f"{self.issuer} has no device_authorization_endpoint")
        started = self._json(
            self.session.post(endpoint, data=self._client({"scope": self.scope}), timeout=TIMEOUT)
        )
        self.show(started)
        tokens = self.poll(metadata["token_endpoint"], started)
        return self.validate(tokens["id_token"], metadata["jwks_uri"])

    def show(self, started: dict[str, Any]) -> None:
        """The QR code of ``verification_uri_complete`` and the code, for the person."""
        complete = started.get("verification_uri_complete") or started["verification_uri"]
        qr = qrcode.QRCode(border=2)
        qr.add_data(complete)
        art = io.StringIO()
        qr.print_ascii(out=art, invert=True)
        minutes = max(1, int(started.get("expires_in", 600)) // 60)
        print(
            f"\nSign in on this device with your phone.\n\n{art.getvalue()}\n"
            f"Scan the code with the QR-IdP phone app, or open {started['verification_uri']}\n"
            f"in the app and type the code:  {started['user_code']}\n\n"
            f"Check that your phone shows the same code. Never type a code that someone\n"
            f"sent you: it would sign them in as you. It expires in {minutes} minutes.\n",
            file=self.out,
            flush=True,
        )

    def poll(self, token_endpoint: str, started: dict[str, Any]) -> dict[str, Any]:
        """Poll every ``interval`` seconds (5 s more after each ``slow_down``)."""
        interval = float(started.get("interval", 5))
        deadline = time.monotonic() + float(started.get("expires_in", 600))
        data = self._client({"grant_type": DEVICE_GRANT, "device_code": started["device_code"]})
        while time.monotonic() < deadline:
            self.sleep(interval)
            response = self.session.post(token_endpoint, data=data, timeout=TIMEOUT)
            if response.status_code == 200:
                return self._json(response)
            error = self._error(response)
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += 5
                continue
            if error == "access_denied":
                raise DeviceFlowError("the sign-in was denied on the phone")
            if error == "expired_token":
                raise DeviceFlowError("the code expired before a phone approved it: run me again")
            raise DeviceFlowError(f"the IdP refused: {error}: {self._description(response)}")
        raise DeviceFlowError("the code expired before a phone approved it: run me again")

    def validate(self, id_token: str, jwks_uri: str) -> dict[str, Any]:
        """The ID token's claims, once its signature (the IdP's JWKS), ``iss``, ``aud`` and
        ``exp`` check out."""
        published: Any = self._json(self.session.get(jwks_uri, timeout=TIMEOUT))
        keys = KeySet.import_key_set(published)
        try:
            token = jwt.decode(id_token, keys, algorithms=["RS256", "ES256"])
            JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                sub={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise DeviceFlowError(f"the ID token does not check out: {exc}") from exc
        return dict(token.claims)

    def _client(self, data: dict[str, str]) -> dict[str, str]:
        data = {"client_id": self.client_id, **data}
        if self.client_secret:
            data["client_secret"] = self.client_secret
        return data

    def _discovery(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def _json(self, response: requests.Response) -> dict[str, Any]:
        if response.status_code != 200:
            raise DeviceFlowError(
                f"{response.request.method} {response.url} answered {response.status_code}: "
                f"{self._error(response)}: {self._description(response)}"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise DeviceFlowError(f"{response.url} did not answer JSON") from exc
        if not isinstance(body, dict):
            raise DeviceFlowError(f"{response.url} did not answer a JSON object")
        return body

    @staticmethod
    def _error(response: requests.Response) -> str:
        try:
            return str(response.json().get("error", "error"))
        except (ValueError, AttributeError):
            return f"HTTP {response.status_code}"

    @staticmethod
    def _description(response: requests.Response) -> str:
        try:
            return str(response.json().get("error_description", ""))
        except (ValueError, AttributeError):
            return response.text[:200]
