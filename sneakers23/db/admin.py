"""The admin audit: every action from the dashboard and every login, with who, what, when and how
it went. Its failed logins are what the login throttle counts (domain/admin.py `login_wait`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, func, insert, select

from sneakers23.db.models import AdminAuditRow
from sneakers23.domain.admin import ActionKind, AuditEntry, FailedLogin

audit_t = AdminAuditRow.__table__


def record(connection: Connection, who: str, action: str, target: str, ok: bool, result: str,
           client: str) -> AuditEntry:
    at = datetime.now(timezone.utc)
    entry_id = connection.execute(
        insert(audit_t).values(at=at, who=who[:64], action=action[:32], target=target[:64], ok=ok,
                               result=result[:512], client=client[:64]).returning(audit_t.c.id)
    ).scalar_one()
    return AuditEntry(entry_id, at, who[:64], action[:32], target[:64], ok, result[:512])


def recent(connection: Connection, limit: int = 50) -> list[AuditEntry]:
    rows = connection.execute(select(audit_t).order_by(audit_t.c.id.desc()).limit(limit)).all()
    return [AuditEntry(row.id, _utc(row.at), row.who, row.action, row.target, row.ok, row.result) for row in rows]


def failed_logins(connection: Connection, window: timedelta) -> list[FailedLogin]:
    """The logins that failed within the window, and since logins were last unlocked."""
    since = datetime.now(timezone.utc) - window
    unlocked = connection.execute(
        select(func.max(audit_t.c.at)).where(audit_t.c.action == ActionKind.UNLOCK_LOGINS.value, audit_t.c.ok.is_(True))
    ).scalar_one()
    if unlocked is not None:
        since = max(since, _utc(unlocked))
    rows = connection.execute(
        select(audit_t.c.at, audit_t.c.client, audit_t.c.who)
        .where(audit_t.c.action == ActionKind.LOGIN.value, audit_t.c.ok.is_(False), audit_t.c.at > since)
    ).all()
    return [FailedLogin(_utc(row.at), row.client, row.who) for row in rows]


def logged_out_since(connection: Connection, since: datetime) -> list[str]:
    """The targets (`session <id>`) of the logouts since then."""
    return list(connection.execute(
        select(audit_t.c.target).where(audit_t.c.action == ActionKind.LOGOUT.value, audit_t.c.at > since)
    ).scalars())


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)  # (SQLite keeps no zone)
