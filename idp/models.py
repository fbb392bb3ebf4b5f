"""Every model, imported in one place so that the metadata is complete (Alembic)."""

from idp.accounts.models import User
from idp.audit import AuditEvent
from idp.db import Base
from idp.mobile.models import Device, EnrollmentRequest, Invitation, UsedProof
from idp.oauth.models import AuthorizationCode, Client, ClientOrigin, SigningKey, Token
from idp.qrlogin.models import LoginRequest, ShortCodeFailure
from idp.sso.models import BrowserSession, BrowserSessionClient

__all__ = [
    "AuditEvent",
    "AuthorizationCode",
    "Base",
    "BrowserSession",
    "BrowserSessionClient",
    "Client",
    "ClientOrigin",
    "Device",
    "EnrollmentRequest",
    "Invitation",
    "LoginRequest",
    "ShortCodeFailure",
    "SigningKey",
    "Token",
    "UsedProof",
    "User",
]
