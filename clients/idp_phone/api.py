"""The client of the IdP's phone API (``{issuer}/api/mobile/v1``), see ``docs/phone-api.md``.

Every request's JSON body is serialized once to bytes; the ``Device-Proof`` signs exactly
those bytes and exactly those bytes are sent.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import requests
from joserfc.jwk import ECKey

from idp_phone.profile import Profile, ProfileError, generate_key, is_enrolled, resolve_profile_dir
from idp_phone.proof import make_proof, public_jwk

API_PREFIX = "/api/mobile/v1"
"""The path of the phone API below the issuer URL."""

DEFAULT_TIMEOUT = 15.0
"""Seconds to wait for the server to connect and to answer."""

USER_AGENT = "idp-phone/0.1"

INBOX_SUBPROTOCOL = "idp-inbox"
"""The inbox socket's subprotocol; the ``Device-Proof`` is offered beside it."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,199}")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


#: The letters of a short code: no look-alikes (B/8, I/L/1, O/0, S/5, Z/2).
SHORT_CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY"


def normalize_short_code(text: str) -> str | None:
    """``XXXX-XXXX`` from what was typed (case, spaces and dashes ignored), or ``None``."""
    letters = "".join(text.split()).replace("-", "").upper()
    if len(letters) != 8 or any(c not in SHORT_CODE_ALPHABET for c in letters):
        return None
    return f"{letters[:4]}-{letters[4:]}"


class PhoneApiError(Exception):
    """The server refused the request: ``{"error": CODE, "error_description": TEXT}``."""

    def __init__(
        self, status: int, error: str, description: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        #: Seconds to wait before trying again (``Retry-After`` of a 429 or 503), if given.
        self.retry_after = retry_after


class ServerUnreachableError(Exception):
    """The server could not be reached (DNS, refused connection, TLS failure, timeout)."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"cannot reach {server}: {reason}")
        self.server = server
        self.reason = reason


class NotASignInCodeError(ValueError):
    """The scanned text is not ``{server}/q/{id}`` for this profile's server."""

    def __init__(self, server: str, text: str) -> None:
        super().__init__(f"This QR code is not a sign-in code for {server}")
        self.server = server
        self.text = text


def normalize_server(url: str) -> str:
    """Return the issuer URL ``url`` with a lowercase scheme and host and no trailing slash.

    Raises ValueError unless it is an absolute http(s) URL without credentials, query or
    fragment.
    """
    text = url.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the server must be an http:// or https:// URL, not {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the server URL must not contain a user name or password")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError("the server URL must not have a query or fragment")
    return urlunsplit((scheme, parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def device_user_code(server: str, qr_text: str) -> str | None:
    """The user code of a device's QR code, ``{server}/device?user_code=XXXX-XXXX`` (RFC
    8628's ``verification_uri_complete``), normalized; ``None`` if ``qr_text`` is not one
    of ``server``'s (another path, host or query). Raises :class:`NotASignInCodeError` for
    such a URL whose code is not a code. Scheme and host are compared without regard to
    case, the path exactly."""
    text = qr_text.strip()
    base, parts = urlsplit(server), urlsplit(text)
    if (
        parts.scheme.lower() != base.scheme.lower()
        or parts.netloc.lower() != base.netloc.lower()
        or parts.path != base.path.rstrip("/") + "/device"
        or "#" in text
    ):
        return None
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) != {"user_code"} or len(query["user_code"]) != 1:
        return None
    code = normalize_short_code(query["user_code"][0])
    if code is None:
        raise NotASignInCodeError(server, qr_text)
    return code


def check_login_qr(server: str, qr_text: str) -> str:
    """Check that ``qr_text`` is a sign-in QR code of ``server``: ``{server}/q/{id}``, or
    a device's ``{server}/device?user_code=XXXX-XXXX``.

    Returns the sign-in request id (for a device's: its user code); raises
    :class:`NotASignInCodeError` otherwise. Scheme and host are compared without regard to
    case, the path exactly.
    """
    code = device_user_code(server, qr_text)
    if code is not None:
        return code
    text = qr_text.strip()
    base = urlsplit(server)
    parts = urlsplit(text)
    prefix = base.path.rstrip("/") + "/q/"
    if (
        parts.scheme.lower() != base.scheme.lower()
        or parts.netloc.lower() != base.netloc.lower()
        or "?" in text
        or "#" in text
        or not parts.path.startswith(prefix)
    ):
        raise NotASignInCodeError(server, qr_text)
    request_id = parts.path[len(prefix) :]
    if not _REQUEST_ID.fullmatch(request_id):
        raise NotASignInCodeError(server, qr_text)
    return request_id


def _unreachable_reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed (is it really https, with a certificate valid for this host?)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    found = _ERRNO.search(str(exc))
    if found:
        return found.group(1).strip().lower()
    return "connection failed"


def _parse_answer(response: requests.Response, expected: int | tuple[int, ...]) -> dict[str, Any]:
    """Return the JSON object of a ``expected`` answer, else raise PhoneApiError."""
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(expected, tuple):
        expected = status if status in expected else expected[0]
    if status == expected and isinstance(data, dict):
        return data
    if isinstance(data, dict) and isinstance(data.get("error"), str) and status >= 400:
        description = data.get("error_description")
        retry_after = response.headers.get("Retry-After", "")
        raise PhoneApiError(
            status,
            data["error"],
            description if isinstance(description, str) else "",
            retry_after=int(retry_after) if retry_after.isdigit() else None,
        )
    if status == expected:
        raise PhoneApiError(status, "invalid_response", "the server's answer is not a JSON object")
    raise PhoneApiError(
        status,
        "unexpected_response",
        f"the server answered HTTP {status} {response.reason or ''}".rstrip()
        + ", not a phone API answer (is this the IdP's issuer URL?)",
    )


def _text_or(value: object, default: str) -> str:
    return value if isinstance(value, str) and value else default


def _login_request(data: dict[str, Any], status: int) -> dict[str, Any]:
    view = data.get("login_request")
    if not isinstance(view, dict) or not isinstance(view.get("id"), str) or not view["id"]:
        raise PhoneApiError(status, "invalid_response", "the answer has no login_request")
    return view


@dataclass(frozen=True)
class PendingEnrollment:
    """A new phone's enrollment that waits for one of the user's phones to approve it."""

    server: str
    id: str
    code: str
    expires_at: str
    device_name: str
    username: str
    key: ECKey = field(repr=False, compare=False)


class ApprovalNeeded(Exception):
    """The password was right, but the user has a phone already: one of their phones
    must approve this one (type ``pending.code`` in it). Nothing is saved yet."""

    def __init__(self, pending: PendingEnrollment) -> None:
        super().__init__(f"another phone must approve this one with the code {pending.code}")
        self.pending = pending


class EnrollmentNotApproved(Exception):
    """The pending enrollment ended without approval: ``status`` is denied or expired."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the enrollment was {status}")
        self.status = status


_ENROLLMENT_CODE = re.compile(r"[A-Z]{4}-[A-Z]{4}")


def _pending_enrollment(data: dict[str, Any], status: int) -> dict[str, Any]:
    view = data.get("pending_enrollment")
    if (
        not isinstance(view, dict)
        or not isinstance(view.get("id"), str)
        or not _REQUEST_ID.fullmatch(view["id"])
        or not isinstance(view.get("status"), str)
    ):
        raise PhoneApiError(status, "invalid_response", "the answer has no pending_enrollment")
    return view


class PhoneClient:
    """The phone side of QR sign-in, bound to one profile directory.

    Every method returns the JSON object the server answered and raises
    :class:`PhoneApiError` when the server refuses, :class:`ServerUnreachableError` when it
    cannot be reached, :class:`ProfileError` when the profile is missing or broken.
    """

    def __init__(
        self,
        profile_dir: str | os.PathLike[str] | None = None,
        *,
        session: requests.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        language: str | None = None,
    ) -> None:
        """Use the profile in ``profile_dir`` (default ``~/.config/idp-phone``).

        ``language`` (a BCP 47 tag such as ``zh-CN``) is sent as ``Accept-Language``, so
        that scope descriptions come in the phone's language.
        """
        self.profile_dir = resolve_profile_dir(profile_dir)
        self._session = session if session is not None else requests.Session()
        if language:
            self._session.headers["Accept-Language"] = language
        self._timeout = timeout
        self._profile: Profile | None = None

    @property
    def profile(self) -> Profile:
        """The enrolled profile, read from disk on first use."""
        if self._profile is None:
            self._profile = Profile.load(self.profile_dir)
        return self._profile

    def _send(
        self,
        method: str,
        server: str,
        path: str,
        payload: dict[str, Any] | None,
        *,
        key: ECKey,
        kid: str | None = None,
        jwk: dict[str, Any] | None = None,
        expected: int | tuple[int, ...] = 200,
    ) -> dict[str, Any]:
        url = f"{server}{API_PREFIX}{path}"
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Device-Proof": make_proof(key, method, url, body, kid=kid, jwk=jwk),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._session.request(
                method,
                url,
                data=body if payload is not None else None,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise ServerUnreachableError(server, _unreachable_reason(exc)) from exc
        return _parse_answer(response, expected)

    def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> dict[str, Any]:
        profile = self.profile
        return self._send(
            method, profile.server, path, payload, key=profile.key, kid=profile.device_id
        )

    def enroll(self, server: str, username: str, password: str, device_name: str) -> dict[str, Any]:
        """Enroll this phone with ``server`` as ``username``; save the profile on ``201``.
        On ``202`` (the user has a phone already, which must approve this one) raise
        :class:`ApprovalNeeded`: show its code, then :meth:`wait_for_approval`.

        A new key is generated; only its public half is sent (in the proof's ``jwk``).
        Refuses (ProfileError) if the profile directory already holds an enrolled device.
        """
        if is_enrolled(self.profile_dir):
            raise ProfileError(
                f"{self.profile_dir} already holds an enrolled device; "
                "use another --profile directory to enroll again"
            )
        server = normalize_server(server)
        key = generate_key()
        payload = {"username": username, "password": password, "device_name": device_name}
        data = self._send(
            "POST", server, "/devices", payload, key=key, jwk=public_jwk(key), expected=(201, 202)
        )
        if "pending_enrollment" in data:
            view = _pending_enrollment(data, 202)
            code = view.get("code")
            if not isinstance(code, str) or not _ENROLLMENT_CODE.fullmatch(code):
                raise PhoneApiError(202, "invalid_response", "the answer has no code")
            raise ApprovalNeeded(
                PendingEnrollment(
                    server=server,
                    id=view["id"],
                    code=code,
                    expires_at=_text_or(view.get("expires_at"), ""),
                    device_name=device_name,
                    username=username,
                    key=key,
                )
            )
        return self._save_enrolled(server, key, data, device_name, username)

    def _save_enrolled(
        self, server: str, key: ECKey, data: dict[str, Any], device_name: str, username: str
    ) -> dict[str, Any]:
        """Save the profile of the device view ``data`` the server answered."""
        device_id = data.get("device_id")
        if not isinstance(device_id, str) or not device_id:
            raise PhoneApiError(201, "invalid_response", "the answer has no device_id")
        user = data.get("user")
        profile = Profile(
            directory=self.profile_dir,
            server=server,
            device_id=device_id,
            device_name=_text_or(data.get("device_name"), device_name),
            username=_text_or(user.get("username") if isinstance(user, dict) else None, username),
            key=key,
        )
        profile.save()
        self._profile = profile
        return data

    def enrollment_status(self, pending: PendingEnrollment) -> dict[str, Any]:
        """How a pending enrollment stands (``GET .../enrollments/{id}``, signed by its key)."""
        path = f"/enrollments/{quote(pending.id, safe='')}"
        data = self._send(
            "GET", pending.server, path, None, key=pending.key, jwk=public_jwk(pending.key)
        )
        _pending_enrollment(data, 200)
        return data

    def withdraw_enrollment(self, pending: PendingEnrollment) -> dict[str, Any]:
        """Give up waiting (``POST .../enrollments/{id}/withdraw``, signed by its key): no
        phone can approve the request afterwards, so no phone is enrolled with a key that
        this program is about to forget."""
        path = f"/enrollments/{quote(pending.id, safe='')}/withdraw"
        data = self._send(
            "POST", pending.server, path, {}, key=pending.key, jwk=public_jwk(pending.key)
        )
        _pending_enrollment(data, 200)
        return data

    def wait_for_approval(
        self,
        pending: PendingEnrollment,
        *,
        interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Ask every ``interval`` seconds until the enrollment is decided; once approved,
        save the profile and return the device view. Denied or expired:
        :class:`EnrollmentNotApproved`."""
        while True:
            data = self.enrollment_status(pending)
            status = data["pending_enrollment"]["status"]
            if status == "approved":
                device = data.get("device")
                if not isinstance(device, dict):
                    raise PhoneApiError(200, "invalid_response", "the answer has no device")
                return self._save_enrolled(
                    pending.server, pending.key, device, pending.device_name, pending.username
                )
            if status != "pending":
                raise EnrollmentNotApproved(status)
            sleep(interval)

    def lookup_enrollment(self, code: str) -> dict[str, Any]:
        """The new phone of this user that shows ``code``: its name, where it is
        (``{"pending_enrollment": {...}}``), to show before approving."""
        if normalize_short_code(code) is None:
            raise ValueError("the new phone's code is 8 letters like KXRT-WMPQ")
        data = self._call("POST", "/enrollments/lookup", {"code": code.strip()})
        _pending_enrollment(data, 200)
        return data

    def approve_enrollment(self, enrollment_id: str) -> dict[str, Any]:
        """Approve the new phone ``enrollment_id`` (from :meth:`lookup_enrollment`)."""
        return self._decide_enrollment(enrollment_id, "approve")

    def deny_enrollment(self, enrollment_id: str) -> dict[str, Any]:
        """Deny the new phone ``enrollment_id``: nothing is enrolled."""
        return self._decide_enrollment(enrollment_id, "deny")

    def _decide_enrollment(self, enrollment_id: str, decision: str) -> dict[str, Any]:
        if not enrollment_id:
            raise ValueError("enrollment_id must not be empty")
        path = f"/enrollments/{quote(enrollment_id, safe='')}/{decision}"
        data = self._call("POST", path, {})
        _pending_enrollment(data, 200)
        return data

    def me(self) -> dict[str, Any]:
        """Ask the server who this device is (``GET .../devices/me``)."""
        return self._call("GET", "/devices/me", None)

    def devices(self) -> list[dict[str, Any]]:
        """Every phone of this user, revoked ones included (``GET .../devices``)."""
        devices = self._call("GET", "/devices", None).get("devices")
        if not isinstance(devices, list):
            raise PhoneApiError(200, "invalid_response", "the answer has no devices")
        return devices

    def revoke(self, device_id: str) -> dict[str, Any]:
        """Revoke one of this user's phones (a lost one, or this one)."""
        if not device_id:
            raise ValueError("device_id must not be empty")
        return self._call("POST", f"/devices/{quote(device_id, safe='')}/revoke", {})

    def scan(self, qr_text: str) -> dict[str, Any]:
        """Report a scanned QR code; returns ``{"login_request": {...}}`` to show the user.

        The text is first checked locally to be ``{server}/q/{id}`` for this profile's server,
        or a device's ``{server}/device?user_code=...`` (:class:`NotASignInCodeError`
        otherwise, without contacting any server). A device's is sent as its user code, as
        if typed (:meth:`scan_user_code`).
        """
        check_login_qr(self.profile.server, qr_text)
        code = device_user_code(self.profile.server, qr_text)
        if code is not None:
            return self.scan_user_code(code)
        data = self._call("POST", "/login-requests/scan", {"qr": qr_text.strip()})
        _login_request(data, 200)
        return data

    def scan_code(self, code: str) -> dict[str, Any]:
        """Report a short code typed from the page ("Can't scan?"), as :meth:`scan` does."""
        if normalize_short_code(code) is None:
            raise ValueError("a sign-in code is 8 letters like KXRT-WMPQ")
        data = self._call("POST", "/login-requests/scan", {"code": code.strip()})
        _login_request(data, 200)
        return data

    def scan_user_code(self, user_code: str) -> dict[str, Any]:
        """Report a device's user code (RFC 8628: a TV or a command line shows it), typed
        or read from its QR code: the same call as :meth:`scan_code`. The answer's
        ``login_request`` has ``kind`` ``"device"`` and ``user_code``, to compare with the
        device's screen."""
        if normalize_short_code(user_code) is None:
            raise ValueError("a device's code is 8 letters like KXRT-WMPQ")
        return self.scan_code(user_code)

    def approve(self, request_id: str, number: str | None = None) -> dict[str, Any]:
        """Approve the sign-in request ``request_id`` this device scanned; with number
        matching, ``number`` is the one of the view's ``number_matching.choices`` that the
        person read on the screen (a wrong one denies the sign-in)."""
        return self._decide(request_id, "approve", {"number": number} if number else {})

    def deny(self, request_id: str) -> dict[str, Any]:
        """Deny the sign-in request ``request_id`` this device scanned."""
        return self._decide(request_id, "deny")

    def release(self, request_id: str) -> dict[str, Any]:
        """Give back the sign-in request ``request_id`` this device scanned by mistake
        (someone else's screen): it waits for another scan again."""
        return self._decide(request_id, "release")

    def inbox(self) -> list[dict[str, Any]]:
        """The requests sites made for this user from their servers (OpenID CIBA), waiting
        for a decision (``GET .../inbox``), oldest first."""
        items = self._call("GET", "/inbox", None).get("inbox")
        if not isinstance(items, list):
            raise PhoneApiError(200, "invalid_response", "the answer has no inbox")
        return items

    def open_request(self, request_id: str) -> dict[str, Any]:
        """Take up one request of the inbox (as a scan does a QR sign-in): returns
        ``{"login_request": {...}}`` to show before :meth:`approve` or :meth:`deny`."""
        if not request_id:
            raise ValueError("request_id must not be empty")
        data = self._call("POST", f"/inbox/{quote(request_id, safe='')}/open", {})
        _login_request(data, 200)
        return data

    def inbox_socket(self) -> Any:
        """A connected WebSocket (``simple_websocket.Client``) to ``.../inbox/ws``: each
        message is ``{"inbox": [...]}`` (the whole list, first at once, then after every
        change) or ``{"heartbeat": true}``. The proof rides as a subprotocol."""
        from simple_websocket import Client

        profile = self.profile
        url = f"{profile.server}{API_PREFIX}/inbox/ws"
        proof = make_proof(profile.key, "GET", url, b"", kid=profile.device_id)
        ws_url = "ws" + url.removeprefix("http")
        try:
            # The handshake reads one byte at a time: simple-websocket parses only the
            # first event of one read, so the list the server sends right after its 101
            # (often in the same segment) would wait in its buffer. Then larger reads.
            ws = Client(
                ws_url,
                subprotocols=[INBOX_SUBPROTOCOL, proof],
                headers={"User-Agent": USER_AGENT},
                receive_bytes=1,
            )
            ws.receive_bytes = 4096
            return ws
        except (OSError, ConnectionError) as exc:
            raise ServerUnreachableError(profile.server, str(exc) or "connection failed") from exc

    def _decide(
        self, request_id: str, decision: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if not request_id:
            raise ValueError("request_id must not be empty")
        path = f"/login-requests/{quote(request_id, safe='')}/{decision}"
        data = self._call("POST", path, payload or {})
        _login_request(data, 200)
        return data
