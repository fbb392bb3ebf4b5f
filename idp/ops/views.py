"""``/healthz`` (the process answers), ``/readyz`` (it can serve sign-ins) and
``/metrics`` (Prometheus)."""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text

from idp import db, web
from idp.config import is_loopback
from idp.errors import Forbidden, Unauthorized, json_errors
from idp.ops import metrics

bp = json_errors(Blueprint("ops", __name__))
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process is up and answering (checks nothing else)."""
    return web.no_store(jsonify(status="ok"))


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: a load balancer sends traffic only while this says 200.

    Ready while the database answers: every sign-in's state is there. Without the
    broker this node still serves sign-ins, only slower to tell a waiting page (it
    learns at its next heartbeat, from the database) and with per-process abuse
    counters: 200 ``degraded``, so that a Redis outage does not take every node out of
    the load balancer at once. Without the database: 503 ``unavailable``.
    """
    checks = {"database": "ok", "broker": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as error:
        log.warning("readiness: database unreachable: %s", error)
        checks["database"] = "unreachable"
    finally:
        db.session.remove()
    if not current_app.extensions["idp.broker"].ping():
        checks["broker"] = "unreachable"
    if checks["database"] != "ok":
        status, code = "unavailable", 503
    else:
        status, code = ("ready", 200) if checks["broker"] == "ok" else ("degraded", 200)
    response = jsonify(status=status, checks=checks)
    response.status_code = code
    return web.no_store(response)


@bp.get("/metrics")
def prometheus() -> Response:
    """Prometheus metrics: with ``IDP_METRICS_TOKEN`` set, only for that bearer token;
    without it, only for a loopback client (the address after ``IDP_TRUSTED_PROXIES``)."""
    expected = current_app.config["IDP_METRICS_TOKEN"]
    if expected:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("metrics need the metrics token", challenge='Bearer realm="metrics"')
    elif not is_loopback(request.remote_addr or ""):
        description = "metrics answer only on loopback unless IDP_METRICS_TOKEN is set"
        raise Forbidden(description)
    body, content_type = metrics.exposition()
    return web.no_store(Response(body, content_type=content_type))
