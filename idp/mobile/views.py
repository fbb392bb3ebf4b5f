"""The phone app's JSON API, ``/api/mobile/v1``. See docs/phone-api.md."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, current_app, jsonify

from idp import audit, db, geoip, limits
from idp.errors import (
    DeviceExists,
    DeviceNotFound,
    DifferentNetwork,
    InvalidCredentials,
    InvalidRequest,
    NotALoginCode,
    PasswordEnrollmentDisabled,
    UnknownCode,
    UnknownEnrollment,
    WrongAccount,
    WrongNumber,
)
from idp.mobile import enrollment_requests as enrollments
from idp.mobile.api import (
    bp,
    gone_is_gone,
    iso,
    json_object,
    login_request_view,
    string_member,
    verified_device,
    verify,
)
from idp.mobile.enrollment_requests import (
    current_status,
    enroll_with_password,
    enrollment_code,
)
from idp.mobile.invitations import enroll_by_invitation
from idp.mobile.models import Device, EnrollmentRequest
from idp.mobile.proof import Proof
from idp.mobile.services import (
    check_enrollment,
    find_device,
    list_devices,
    revoke_device,
)
from idp.oauth import device as device_grant
from idp.qrlogin import proximity, shortcodes
from idp.qrlogin import services as logins
from idp.qrlogin.models import Kind, LoginRequest
from idp.qrlogin.useragent import summarize_user_agent
from idp.web import Caller

NUMBER_RE = re.compile(r"^[0-9]{2}\Z")


@bp.post("/devices")
@limits.per_ip("IDP_LIMIT_ENROLL", scope="enroll")
def enroll() -> tuple[Response, int]:
    """Enroll a phone: a password or an invitation once, then only its key."""
    proof = verify(enrollment=True)
    body = json_object()
    if ("invitation" in body) == ("username" in body or "password" in body):
        raise InvalidRequest("send either 'invitation', or 'username' and 'password'")
    device_name = string_member(body, "device_name")
    if "invitation" in body:
        device = enroll_by_invitation(
            string_member(body, "invitation"), proof.key, device_name, caller=Caller.from_request()
        )
        response = jsonify(_device_view(device))
        db.session.commit()
        return response, 201
    return _enroll_with_password(proof, body, device_name)


def _enroll_with_password(
    proof: Proof, body: dict[str, Any], device_name: str
) -> tuple[Response, int]:
    """The password path: counted per username (``IDP_LIMIT_PASSWORD``), audited. The user's
    first phone is enrolled at once (201); a next one waits for a phone's approval (202,
    see ``enrollment_requests``), as ``IDP_PASSWORD_ENROLLMENT`` says."""
    username, password = string_member(body, "username"), string_member(body, "password")
    check_enrollment(username, device_name)  # a malformed name is never counted or audited
    limits.charge_password(username)  # before the check: concurrent guesses cannot race it
    caller = Caller.from_request()
    try:
        result = enroll_with_password(username, password, device_name, proof.key, caller=caller)
    except InvalidCredentials:
        audit.record("device.enroll_refused", caller=caller, username=username)
        db.session.commit()  # the refusal is what this request did: it is logged
        raise
    except DeviceExists:  # the password was right: this phone is enrolled already
        limits.forgive_password(username)
        raise
    except PasswordEnrollmentDisabled:  # the password was right, but enrolls nothing here
        db.session.rollback()
        audit.record(
            "device.enroll_refused",
            caller=caller,
            username=username,
            reason="password_enrollment_disabled",
        )
        db.session.commit()
        limits.forgive_password(username)
        raise
    if result.pending is not None:
        response = jsonify(pending_enrollment=pending_enrollment_view(result.pending, code=True))
        status = 202
    else:
        assert result.device is not None
        response, status = jsonify(_device_view(result.device)), 201
    db.session.commit()
    limits.forgive_password(username)  # Redis: after the commit, holding no lock
    return response, status


@bp.get("/devices/me")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def whoami() -> Response:
    """The device that signed this request."""
    return jsonify(_device_view(verified_device()))


@bp.get("/devices")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def my_devices() -> Response:
    """Every phone of this device's user, revoked ones included (oldest first)."""
    device = verified_device()
    return jsonify(
        devices=[
            {
                "device_id": d.device_id,
                "device_name": d.name,
                "this_device": d.id == device.id,
                "created_at": iso(d.created_at),
                "last_used_at": iso(d.last_used_at) if d.last_used_at else None,
                "revoked_at": iso(d.revoked_at) if d.revoked_at else None,
                "enrolled_via": d.enrolled_via,
            }
            for d in list_devices(device.user.username)
        ]
    )


@bp.post("/devices/<device_id>/revoke")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def revoke_my_device(device_id: str) -> Response:
    """Revoke one of this user's phones (a lost one, or this one): its next request fails."""
    device = verified_device()
    json_object()
    target = find_device(device_id)
    if target is None or target.user_id != device.user_id:
        raise DeviceNotFound()  # another user's device gets the same answer as none
    revoked = revoke_device(device_id, by=device.device_id, caller=Caller.from_request()).device
    response = jsonify(device_id=revoked.device_id, revoked_at=iso(revoked.revoked_at))
    db.session.commit()  # the phone and everything it gave, in one transaction
    return response


GONE = "this sign-in code is expired or unknown: ask the page for a new one"


@bp.post("/login-requests/scan")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
@gone_is_gone(GONE)
def scan() -> Response:
    """The camera read a QR code (``{"qr": ...}``: a page's ``{issuer}/q/<id>``, or a
    device's ``{issuer}/device?user_code=...``), or the person typed the page's short code
    or the device's user code (``{"code": ...}``): show what is asked, by whom, from where."""
    device = verified_device(action=True)
    body = json_object()
    if ("qr" in body) == ("code" in body):
        raise InvalidRequest("send either 'qr' (the scanned text) or 'code' (the typed code)")
    caller = Caller.from_request()
    user_code = None  # a device's user code, echoed for the person to compare
    if "qr" in body:
        qr_text = string_member(body, "qr")
        user_code = device_grant.user_code_from_url(qr_text)
        if user_code == "":
            raise InvalidRequest(_NOT_A_USER_CODE)
        if user_code is None:
            request_id = _request_id_from_qr(qr_text)
        else:
            request_id = _find_by_code(user_code, device, caller)
    else:
        code = string_member(body, "code")
        request_id = _find_by_code(code, device, caller)
        user_code = shortcodes.normalize(code)
    try:
        login = logins.scan_login(request_id, device, caller=caller)
    except WrongAccount:
        db.session.commit()  # the refusal is audited: that stands (a typed code is not used)
        raise
    view = login_request_view(login, phone_ip=caller.ip, user_id=device.user_id)
    if login.kind == Kind.DEVICE:
        # What the device shows, to compare: the code the phone sent, never a stored one
        # (only its digest is kept). A scan by request id has none to echo.
        view["user_code"] = user_code
    response = jsonify(login_request=view)
    db.session.commit()
    return response


_NOT_A_USER_CODE = f"this device code's user_code is not {shortcodes.LENGTH} letters like KXRT-WMPQ"


def _find_by_code(text: str, device: Device, caller: Caller) -> str:
    """The request id of a typed short code or a device's user code. A wrong one is
    refused, counted and audited (``login.code_refused``: the phone and its address,
    never the code): the failure is committed with the rest of this request (the user's
    row stays locked until then, see ``shortcodes``)."""
    try:
        return shortcodes.find_by_code(text, device).id
    except UnknownCode:
        audit.record(
            "login.code_refused",
            caller=caller,
            username=device.user.username,
            device_id=device.device_id,
        )
        db.session.commit()
        raise


@bp.post("/login-requests/<request_id>/approve")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
@gone_is_gone(GONE)
def approve(request_id: str) -> Response:
    """The user tapped Approve."""
    device = verified_device(action=True)
    body = json_object()
    number = body.get("number")
    if number is not None and not (isinstance(number, str) and NUMBER_RE.match(number)):
        raise InvalidRequest("'number' must be the two digits the page shows, as a string")
    try:
        login = logins.approve_login(request_id, device, number, caller=Caller.from_request())
    except (WrongNumber, DifferentNetwork):
        db.session.commit()  # a wrong number, or a phone off the browser's network, denied it
        raise
    return _decided(login)


@bp.post("/login-requests/<request_id>/deny")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
@gone_is_gone(GONE)
def deny(request_id: str) -> Response:
    """The user tapped Deny."""
    device = verified_device(action=True)
    json_object()
    login = logins.deny_login(request_id, device, caller=Caller.from_request())
    return _decided(login)


@bp.post("/login-requests/<request_id>/release")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
@gone_is_gone(GONE)
def release(request_id: str) -> Response:
    """The user tapped "Not my sign-in": the request goes back to the page, unscanned."""
    device = verified_device(action=True)
    json_object()
    login = logins.release_login(request_id, device, caller=Caller.from_request())
    return _decided(login)


def _decided(login: LoginRequest) -> Response:
    """The answer to a decision on a sign-in (approve, deny, give back), committed."""
    response = jsonify(login_request={"id": login.id, "status": login.status})
    db.session.commit()
    return response


# A new phone needs an old phone: the new phone polls its request; one of the user's
# phones looks it up by its code, then approves or denies (idp.mobile.enrollment_requests).

UNKNOWN = "no such request to set up a phone (for this phone's key)"


@bp.get("/enrollments/<enrollment_id>")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def enrollment_status(enrollment_id: str) -> Response:
    """The new phone asks how its request stands (signed by the request's own key)."""
    proof = verify(enrollment=True)
    pending = enrollments.find_by_id_for_key(enrollment_id, proof.thumbprint)
    if pending is None:
        raise UnknownEnrollment(UNKNOWN)  # one answer for an unknown id and another key's
    device = db.session.get(Device, pending.device_pk) if pending.device_pk else None
    return jsonify(
        pending_enrollment=pending_enrollment_view(pending),
        device=_device_view(device) if device else None,
    )


@bp.post("/enrollments/<enrollment_id>/withdraw")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def withdraw_enrollment(enrollment_id: str) -> Response:
    """The new phone gives up waiting (signed by the request's own key): no phone can
    approve its request any more."""
    proof = verify(enrollment=True)
    json_object()
    pending = enrollments.find_by_id_for_key(enrollment_id, proof.thumbprint)
    if pending is None:
        raise UnknownEnrollment(UNKNOWN)  # one answer for an unknown id and another key's
    pending = enrollments.withdraw_enrollment(pending, caller=Caller.from_request())
    response = jsonify(pending_enrollment={"id": pending.id, "status": pending.status})
    db.session.commit()
    return response


@bp.post("/enrollments/lookup")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def lookup_enrollment() -> Response:
    """A phone of the user typed the code its new phone shows: what and where is it?"""
    device = verified_device(action=True)
    body = json_object()
    pending = enrollments.lookup_by_code(string_member(body, "code"), device)
    return jsonify(pending_enrollment=lookup_view(pending, phone_ip=Caller.from_request().ip))


@bp.post("/enrollments/<enrollment_id>/approve")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def approve_enrollment(enrollment_id: str) -> Response:
    """The user's phone approves: the new phone is enrolled."""
    device = verified_device(action=True)
    json_object()
    pending, new = enrollments.approve_enrollment(
        enrollment_id, device, caller=Caller.from_request()
    )
    response = jsonify(
        pending_enrollment={"id": pending.id, "status": pending.status},
        device={"device_id": new.device_id, "device_name": new.name},
    )
    db.session.commit()  # the decision and the new phone, in one transaction
    return response


@bp.post("/enrollments/<enrollment_id>/deny")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def deny_enrollment(enrollment_id: str) -> Response:
    """The user's phone denies: nothing is enrolled."""
    device = verified_device(action=True)
    json_object()
    pending = enrollments.deny_enrollment(enrollment_id, device, caller=Caller.from_request())
    response = jsonify(pending_enrollment={"id": pending.id, "status": pending.status}, device=None)
    db.session.commit()
    return response


def lookup_view(pending: EnrollmentRequest, *, phone_ip: str | None) -> dict[str, Any]:
    """What the approving phone must show: the new phone's name, and where it is, compared
    with where this phone is (a phished password is used from the attacker's network)."""
    return {
        "id": pending.id,
        "status": enrollments.current_status(pending),
        "device_name": pending.device_name,
        "created_at": iso(pending.created_at),
        "expires_at": iso(pending.expires_at),
        "from": {
            "ip": pending.ip,
            "location": geoip.locate(pending.ip),
            "summary": summarize_user_agent(pending.user_agent),
        },
        "proximity": proximity.assess(pending.ip, phone_ip).view(),
    }


def _request_id_from_qr(text: str) -> str:
    prefix = current_app.config["IDP_ISSUER"] + "/q/"
    text = text.strip()
    if not text.startswith(prefix):
        raise NotALoginCode(f"this QR code is not a sign-in code of {prefix[:-3]}")
    return text[len(prefix) :]


def _device_view(device: Device) -> dict[str, Any]:
    user = device.user
    return {
        "device_id": device.device_id,
        "device_name": device.name,
        "user": {"username": user.username, "name": user.name, "email": user.email},
        "enrolled_via": device.enrolled_via,
    }


def pending_enrollment_view(pending: EnrollmentRequest, *, code: bool = False) -> dict[str, Any]:
    """A pending enrollment as its new phone sees it (with ``code``: the code to show)."""
    view = {"id": pending.id, "status": current_status(pending)}
    if code:
        view["code"] = enrollment_code(pending.id)
    view["expires_at"] = iso(pending.expires_at)
    return view
