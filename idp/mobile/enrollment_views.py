"""The phone API's enrollment approvals, ``/api/mobile/v1/enrollments`` (on the mobile
blueprint): the new phone polls its request; one of the user's phones looks it up by its
code, then approves or denies. See docs/phone-api.md and ``enrollment_requests``."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from idp import db, geoip, limits
from idp.errors import UnknownEnrollment
from idp.mobile import enrollment_requests as enrollments
from idp.mobile.models import Device, EnrollmentRequest
from idp.mobile.views import (
    _device_view,
    _iso,
    _json_object,
    _string,
    _verified_device,
    _verify,
    bp,
    pending_enrollment_view,
)
from idp.qrlogin import proximity
from idp.qrlogin.useragent import summarize_user_agent
from idp.web import Caller

UNKNOWN = "no such request to set up a phone (for this phone's key)"


@bp.get("/enrollments/<enrollment_id>")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def enrollment_status(enrollment_id: str) -> Response:
    """The new phone asks how its request stands (signed by the request's own key)."""
    proof = _verify(enrollment=True)
    pending = enrollments.find_by_id_for_key(enrollment_id, proof.thumbprint)
    if pending is None:
        raise UnknownEnrollment(UNKNOWN)  # one answer for an unknown id and another key's
    device = db.session.get(Device, pending.device_pk) if pending.device_pk else None
    return jsonify(
        pending_enrollment=pending_enrollment_view(pending),
        device=_device_view(device) if device else None,
    )


@bp.post("/enrollments/lookup")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def lookup_enrollment() -> Response:
    """A phone of the user typed the code its new phone shows: what and where is it?"""
    device = _verified_device(action=True)
    body = _json_object()
    pending = enrollments.lookup_by_code(_string(body, "code"), device)
    return jsonify(pending_enrollment=lookup_view(pending, phone_ip=Caller.from_request().ip))


@bp.post("/enrollments/<enrollment_id>/approve")
@limits.per_ip("IDP_LIMIT_PHONE_IP", scope="phone")
def approve_enrollment(enrollment_id: str) -> Response:
    """The user's phone approves: the new phone is enrolled."""
    device = _verified_device(action=True)
    _json_object()
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
    device = _verified_device(action=True)
    _json_object()
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
        "created_at": _iso(pending.created_at),
        "expires_at": _iso(pending.expires_at),
        "from": {
            "ip": pending.ip,
            "location": geoip.locate(pending.ip),
            "summary": summarize_user_agent(pending.user_agent),
        },
        "proximity": proximity.assess(pending.ip, phone_ip).view(),
    }
