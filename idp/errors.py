"""One error family, named after the wire codes, and one handler.

Services raise these; the handler renders JSON for API clients (the phone app,
anything that asks for JSON) and an HTML page for people.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed


class IdPError(Exception):
    """Base of every error the IdP reports to a client."""

    status = 400
    code = "invalid_request"
    title = _l("Something is wrong with this request")
    #: Extra response headers (e.g. ``Retry-After``).
    headers: dict[str, str] = {}

    def __init__(self, description: str = "") -> None:
        super().__init__(description or str(self.title))
        self.description = description or str(self.title)


class InvalidRequest(IdPError):
    status, code = 400, "invalid_request"


class NotALoginCode(IdPError):
    status, code, title = 400, "not_a_login_code", _l("This is not a sign-in code of this server")


class InvalidProof(IdPError):
    status, code, title = 401, "invalid_proof", _l("The request's device proof is not valid")


class UnknownDevice(IdPError):
    status, code, title = 401, "unknown_device", _l("This device is not enrolled")


class DeviceRevoked(IdPError):
    status, code, title = 401, "device_revoked", _l("This device was revoked")


class InvalidCredentials(IdPError):
    status, code, title = 401, "invalid_credentials", _l("Wrong username or password")


class Unauthorized(IdPError):
    """Credentials are missing or wrong (``/metrics`` without its token)."""

    status, code = 401, "unauthorized"

    def __init__(self, description: str = "", *, challenge: str) -> None:
        super().__init__(description)
        self.headers = {"WWW-Authenticate": challenge}


class Forbidden(IdPError):
    """Not open to this client (``/metrics`` off loopback)."""

    status, code = 403, "forbidden"


class PasswordEnrollmentDisabled(IdPError):
    status, code = 403, "password_enrollment_disabled"
    title = _l(
        "Setting up a phone with a password is switched off here: ask your administrator for"
        " an invitation."
    )


class WrongDevice(IdPError):
    status, code, title = 403, "wrong_device", _l("Another device scanned this sign-in request")


class WrongNumber(IdPError):
    status, code = 403, "wrong_number"
    title = _l("The number picked on the phone is not the one on the screen: the sign-in is denied")


class BindingMismatch(IdPError):
    status, code = 403, "binding_mismatch"
    title = _l("This sign-in was started elsewhere or is over: start again from the site")


class ForeignOrigin(IdPError):
    status, code, title = 403, "foreign_origin", _l("This request came from another site")


class UnknownRequest(IdPError):
    status, code, title = 404, "unknown_request", _l("No such sign-in request")


class DeviceNotFound(IdPError):
    status, code, title = 404, "device_not_found", _l("You have no such device")


class UnknownEnrollment(IdPError):
    """An unknown enrollment request, or one another key made: one answer for both."""

    status, code, title = 404, "unknown_enrollment", _l("No such request to set up a phone")


class UnknownCode(IdPError):
    status, code = 404, "unknown_code"
    title = _l("No sign-in is waiting for this code: check it, or ask the page for a new one")


class TooManyAttempts(IdPError):
    status, code = 429, "too_many_attempts"
    title = _l("Too many wrong codes: wait a few minutes, or scan the QR code instead")

    def __init__(self, description: str = "", *, retry_after: int) -> None:
        super().__init__(description)
        self.headers = {"Retry-After": str(retry_after)}


class TooManyRequests(IdPError):
    status, code = 429, "too_many_requests"
    title = _l("Too many requests: wait a moment, then try again")

    def __init__(self, description: str = "", *, retry_after: int) -> None:
        super().__init__(description)
        self.headers = {"Retry-After": str(retry_after)}


class AlreadyUsed(IdPError):
    status, code, title = 409, "already_used", _l("This sign-in request was already used")


class NotApproved(IdPError):
    status, code, title = 409, "not_approved", _l("This sign-in has not been approved yet")


class DeviceExists(IdPError):
    status, code, title = 409, "device_exists", _l("This device key is already enrolled")


class Expired(IdPError):
    status, code, title = 410, "expired", _l("This sign-in request expired")


class InvalidInvitation(IdPError):
    """One answer for a used, expired or unknown invitation: a guesser learns nothing."""

    status, code = 410, "invalid_invitation"
    title = _l(
        "This invitation link was already used, has expired or is unknown: ask for a new one"
    )


class InvalidEnrollmentCode(IdPError):
    """One answer for a code that is unknown, expired, decided or another user's."""

    status, code = 410, "invalid_enrollment_code"
    title = _l(
        "No new phone of yours is waiting for this code: check it, or start again on the new phone"
    )


class TemporarilyUnavailable(IdPError):
    status, code = 503, "temporarily_unavailable"
    title = _l("The service is briefly unavailable: try again in a moment")


class RenewalLimit(IdPError):
    status, code, title = 429, "renewal_limit", _l("The code was renewed too many times")


API = TypeVar("API", Blueprint, Callable[..., Any])


def json_errors(target: API) -> API:
    """Declare a blueprint, or one view, an API: its errors are JSON whatever the request's
    ``Accept`` says (``*/*`` included). Pages people open keep HTML for browsers."""
    # A mark read by the error handlers; neither type declares it.
    target.idp_json_errors = True  # type: ignore[attr-defined]
    return target


def wants_json() -> bool:
    """JSON for the APIs (see :func:`json_errors`) and for clients that prefer it; HTML
    for browsers."""
    if _is_api():
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _is_api() -> bool:
    endpoint = request.endpoint or _endpoint_of_other_methods()
    if endpoint is None:  # no such route: an API's when under a JSON blueprint's prefix
        return any(
            getattr(bp, "idp_json_errors", False)
            and bp.url_prefix
            and request.path.startswith(bp.url_prefix.rstrip("/") + "/")
            for bp in current_app.blueprints.values()
        )
    view = current_app.view_functions.get(endpoint)
    blueprint = current_app.blueprints.get(endpoint.rpartition(".")[0])
    return bool(
        getattr(view, "idp_json_errors", False) or getattr(blueprint, "idp_json_errors", False)
    )


def _endpoint_of_other_methods() -> str | None:
    """The endpoint of a route that exists for other methods (a 405 has no endpoint)."""
    error = request.routing_exception
    if not isinstance(error, MethodNotAllowed) or not error.valid_methods:
        return None
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        endpoint, _ = adapter.match(method=next(iter(error.valid_methods)))
    except HTTPException:
        return None
    return str(endpoint)


#: What a person reads for OAuth and HTTP error codes (``error_description`` is for
#: developers); the IdP's own codes use their class's ``title``.
OTHER_TITLES = {
    "invalid_client": _l("This website is not registered with this sign-in service"),
    "unauthorized_client": _l("This website may not sign in this way"),
    "access_denied": _l("The sign-in was denied"),
    "unsupported_response_type": _l(
        "This website asked for a kind of sign-in this service does not offer"
    ),
    "invalid_scope": _l("This website asked for access this service does not give"),
    "server_error": _l("Something went wrong on our side"),
    "not_found": _l("There is no such page here"),
    "method_not_allowed": _l("This page cannot be used that way"),
    "request_entity_too_large": _l("The request is too large"),
}


def human_title(code: str) -> str:
    """The headline a person reads for an error code, in the request's language."""
    pending = [IdPError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return str(cls.title)
        pending.extend(cls.__subclasses__())
    return str(OTHER_TITLES.get(code, IdPError.title))


def error_response(status: int, code: str, description: str) -> Response:
    """Render one error as JSON or HTML, never cached."""
    description = str(description)
    if wants_json():
        response = jsonify(error=code, error_description=description)
    else:
        headline = human_title(code)
        html = render_template(
            "error.html",
            status=status,
            code=code,
            headline=headline,
            details=description if description != headline else "",
        )
        response = Response(html, mimetype="text/html")
    response.status_code = status
    from idp.web import no_store  # here: idp.web imports this module

    return no_store(response)


def render_error(error: IdPError) -> Response:
    """The response for one of our errors, with its extra headers."""
    response = error_response(error.status, error.code, error.description)
    response.headers.update(error.headers)
    return response


def database_unavailable(error: DBAPIError) -> Response:
    """The 503 for a database that is unreachable (restarting, failing over) or busy.

    The transaction was rolled back, so nothing is half-written; the client retries,
    and the pool, having dropped its connections at the first disconnect, reconnects.
    """
    logging.getLogger("idp").warning("database unavailable: %s", error.orig or error)
    from idp import db

    db.session.remove()
    response = error_response(503, TemporarilyUnavailable.code, TemporarilyUnavailable.title)
    response.headers["Retry-After"] = "2"
    return response


def data_refused(error: DataError) -> Response:
    """The 400 for a value the database refused (PostgreSQL: NUL in text, a number out of
    range). Inputs are checked before they get there; this is the last defence, logged
    because it means a check is missing. The transaction was rolled back."""
    logging.getLogger("idp").warning("the database refused a value: %s", type(error.orig).__name__)
    from idp import db

    db.session.remove()
    return error_response(400, InvalidRequest.code, "the request holds a value that is not valid")


def init_app(app: Flask) -> None:
    """Register the handlers for our errors and for plain HTTP errors."""
    app.register_error_handler(IdPError, render_error)

    app.register_error_handler(OperationalError, database_unavailable)
    app.register_error_handler(InterfaceError, database_unavailable)
    app.register_error_handler(DataError, data_refused)

    @app.errorhandler(HTTPException)
    def _handle_http_error(error: HTTPException) -> Response:
        if error.response is not None:  # already rendered, e.g. by Authlib's resource protector
            return error.response  # type: ignore[return-value]
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(error.code or 500, code, error.description or "")
        if valid_methods := getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(valid_methods)
        return response
