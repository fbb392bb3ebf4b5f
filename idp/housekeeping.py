"""``idp purge``: delete what has expired, in short batches.

Safe to run on a schedule, on any host, while the IdP serves, and twice at once:
each batch is its own short transaction (``db.independent_transaction``) that
deletes only rows no request can use any more, so a crash in the middle leaves
nothing half-done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from idp import db
from idp.audit import AuditEvent
from idp.db import utcnow
from idp.mobile.models import EnrollmentRequest, Invitation, UsedProof
from idp.oauth.models import AuthorizationCode, Token
from idp.qrlogin.models import LoginRequest, ShortCodeFailure
from idp.qrlogin.services import approval_grace

BATCH = 5000


@dataclass
class PurgeReport:
    """Rows deleted, by table."""

    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def purge(keep: timedelta = timedelta(hours=1), batch: int = BATCH) -> PurgeReport:
    """Delete login requests, codes, tokens, invitations, enrollment requests and used
    proofs that expired (an invitation: or was used) more than ``keep`` ago (used proofs
    as soon as they expire: a stale proof is refused anyway, and wrong typed short codes
    once they no longer count).

    A login request can still be completed for ``approval_grace()`` after an approval
    near its end, so it is kept at least that long past its expiry.
    """
    if keep < timedelta(0):
        raise ValueError("keep must not be negative")
    now = utcnow()
    login_cutoff = now - max(keep, approval_grace() + timedelta(seconds=60))
    cutoff = now - keep
    epoch_cutoff = int(time.time() - keep.total_seconds())

    report = PurgeReport()
    report.deleted["login_requests"] = _delete_in_batches(
        LoginRequest.id, LoginRequest.expires_at < login_cutoff, batch
    )
    report.deleted["authorization_codes"] = _delete_in_batches(
        AuthorizationCode.id, AuthorizationCode.expires_at < cutoff, batch
    )
    # A token row goes when its access token has expired and its refresh token
    # (if any) is revoked or expired too. ``issued_at < cutoff`` lets the index help.
    token_dead = (
        (Token.issued_at < epoch_cutoff)
        & (Token.issued_at + Token.expires_in < epoch_cutoff)
        & or_(
            Token.refresh_token_hash.is_(None),
            Token.refresh_revoked.is_(True),
            Token.refresh_expires_at < epoch_cutoff,
        )
    )
    report.deleted["tokens"] = _delete_in_batches(Token.id, token_dead, batch)
    # The audit log tells an invitation's story (made, used, refused) after its row goes.
    report.deleted["invitations"] = _delete_in_batches(
        Invitation.id, or_(Invitation.expires_at < cutoff, Invitation.used_at < cutoff), batch
    )
    # Decided or not, an enrollment request is done with once its lifetime has passed;
    # the audit log keeps its story (pending, approved or denied, and by which phone).
    report.deleted["enrollment_requests"] = _delete_in_batches(
        EnrollmentRequest.id, EnrollmentRequest.expires_at < cutoff, batch
    )
    with db.independent_transaction() as session:
        result = session.execute(delete(UsedProof).where(UsedProof.expires_at < now))
    report.deleted["used_proofs"] = result.rowcount  # type: ignore[attr-defined]
    # Wrong typed codes count only within their window.
    window = timedelta(seconds=current_app.config["IDP_SHORT_CODE_WINDOW"])
    report.deleted["short_code_failures"] = _delete_in_batches(
        ShortCodeFailure.id, ShortCodeFailure.at < now - window, batch
    )
    # The audit log is kept IDP_AUDIT_RETENTION_DAYS days (0: for ever).
    if days := current_app.config["IDP_AUDIT_RETENTION_DAYS"]:
        report.deleted["audit_events"] = _delete_in_batches(
            AuditEvent.id, AuditEvent.at < now - timedelta(days=days), batch
        )
    return report


def _delete_in_batches(
    key: InstrumentedAttribute[Any], condition: ColumnElement[bool], batch: int
) -> int:
    table = key.table
    total = 0
    while True:
        ids = select(key).where(condition).limit(batch).scalar_subquery()
        with db.independent_transaction() as session:
            result = session.execute(delete(table).where(key.in_(ids)))
        count = result.rowcount  # type: ignore[attr-defined]
        total += count
        if count < batch:
            return total
