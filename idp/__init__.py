"""QR-IdP: an OpenID Connect provider whose sign-in is "scan the QR code with your phone"."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix

from idp.errors import InvalidRequest
from idp.web import content_security_policy

#: Every page's policy, unless its view sets its own (see ``idp.web.PAGE_POLICY``).
CONTENT_SECURITY_POLICY = content_security_policy()


def instance_folder(instance_path: str | None = None) -> Path:
    """The instance folder: ``instance_path``, else ``IDP_INSTANCE_PATH``, else Flask's
    default (``instance/`` beside the package)."""
    from idp import config as settings

    return Path(
        Flask(__name__, instance_path=instance_path or settings.instance_path()).instance_path
    )


def create_app(config: Mapping[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    """Build the IdP. ``config`` overrides the ``IDP_*`` environment (tests use it)."""
    from idp import config as settings
    from idp import db, errors, geoip, i18n, limits
    from idp.oauth import cors, keys, server
    from idp.ops import logs
    from idp.realtime import broker

    app = Flask(
        __name__, instance_path=str(instance_folder(instance_path)), instance_relative_config=True
    )
    loaded = settings.load(Path(app.instance_path), config)
    app.extensions["idp.settings"] = loaded
    app.config.update(loaded.as_config())
    app.config.update({k: v for k, v in (config or {}).items() if not k.startswith("IDP_")})
    app.config["SECRET_KEY"] = app.config["IDP_SECRET_KEY"]
    app.config["SESSION_COOKIE_NAME"] = "idp_session"
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    if proxies := app.config["IDP_TRUSTED_PROXIES"]:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )

    logs.init_app(app)
    i18n.init_app(app)
    db.init_app(app)
    geoip.init_app(app)
    errors.init_app(app)
    keys.init_app(app)
    server.init_app(app)
    app.extensions["idp.broker"] = broker.create_broker(
        app.config["IDP_BROKER_URL"],
        timeout=app.config["IDP_REDIS_TIMEOUT"],
        ping_interval=app.config["IDP_REDIS_PING_INTERVAL"],
    )
    # Called with (login request, its QR URL) once a page has started a sign-in; only
    # `idp demo` adds one (it prints the phone command that approves it).
    app.extensions["idp.login_started"] = []
    _register_blueprints(app)
    limits.init_app(app)
    _add_security_headers(app)
    cors.init_app(app)  # last: its preflight answers still get the headers above
    return app


def _register_blueprints(app: Flask) -> None:
    from idp.mobile import inbox
    from idp.mobile.inbox import views as _inbox_views  # noqa: F401 (its routes join mobile_bp)
    from idp.mobile.views import bp as mobile_bp
    from idp.oauth import ciba
    from idp.oauth.ciba import views as ciba_views
    from idp.oauth.device import pages as device_pages
    from idp.oauth.views import bp as oauth_bp
    from idp.ops.views import bp as ops_bp
    from idp.qrlogin.views import bp as qrlogin_bp
    from idp.realtime import views as realtime
    from idp.sso.views import bp as sso_bp
    from idp.webapp.views import bp as webapp_bp

    app.register_blueprint(oauth_bp)
    app.register_blueprint(ciba_views.bp)
    app.register_blueprint(qrlogin_bp)
    app.register_blueprint(mobile_bp)
    app.register_blueprint(realtime.bp)
    app.register_blueprint(ops_bp)
    app.register_blueprint(sso_bp)
    app.register_blueprint(webapp_bp)
    app.register_blueprint(device_pages)
    realtime.init_app(app)
    ciba.init_app(app)
    inbox.init_app(app)

    @app.get("/")
    def home() -> str:
        return render_template("home.html")


def _add_security_headers(app: Flask) -> None:
    @app.before_request
    def _refuse_nul_characters() -> None:
        # No identifier, code or token contains NUL; PostgreSQL refuses it in text. Every
        # name and value of the query and of a form body (urlencoded or multipart: Werkzeug
        # parses both into request.form and request.files) is checked, with files' names.
        texts = [request.path]
        for key, value in (*request.args.items(multi=True), *request.form.items(multi=True)):
            texts += (key, value)
        for key, upload in request.files.items(multi=True):
            texts += (key, upload.filename or "")
        if any("\x00" in text for text in texts):
            raise InvalidRequest("request parameters must not contain NUL characters")

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if response.mimetype == "text/html":
            headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            headers.setdefault("X-Frame-Options", "DENY")
        if app.config["IDP_ISSUER"].startswith("https://"):
            headers.setdefault("Strict-Transport-Security", "max-age=63072000")
        return response
