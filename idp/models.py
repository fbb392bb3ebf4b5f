"""Every model, imported in one place so that the metadata is complete (Alembic)."""

from idp.accounts.models import User
from idp.db import Base
from idp.mobile.models import Device, UsedProof
from idp.oauth.models import AuthorizationCode, Client, SigningKey, Token
from idp.qrlogin.models import LoginRequest

__all__ = [
    "AuthorizationCode",
    "Base",
    "Client",
    "Device",
    "LoginRequest",
    "SigningKey",
    "Token",
    "UsedProof",
    "User",
]
