"""What the shop's staff do from the admin dashboard, and the audit of it: pure rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum

MAX_RESTOCK = 10_000
MAX_WHO_CHARS = 64


class ActionKind(StrEnum):
    RELEASE = "release"  # now
    SCHEDULE = "schedule"  # a release at a given time
    CANCEL_SCHEDULE = "cancel_schedule"
    RESTOCK = "restock"
    LOGIN = "login"  # not asked for: written by the login itself (a failed one counts to its throttle)
    UNLOCK_LOGINS = "unlock_logins"  # an operator's `sneakers23 admin unlock`: the throttle starts again
    LOGOUT = "logout"  # its target names the session, which stays revoked until it would have expired


ACTIONS = (ActionKind.RELEASE, ActionKind.SCHEDULE, ActionKind.CANCEL_SCHEDULE, ActionKind.RESTOCK)


@dataclass(frozen=True, slots=True)
class AdminAction:
    kind: ActionKind
    product_id: int | None = None
    item_id: int | None = None
    at: datetime | None = None  # a schedule's release time (UTC-aware)
    count: int | None = None  # a restock's pairs

    @property
    def target(self) -> str:
        return f"item {self.item_id}" if self.item_id is not None else f"product {self.product_id}"

    def describe(self) -> str:
        if self.kind is ActionKind.SCHEDULE:
            return f"schedule the release of product {self.product_id} at {self.at.isoformat()}"
        if self.kind is ActionKind.CANCEL_SCHEDULE:
            return f"cancel the scheduled release of product {self.product_id}"
        if self.kind is ActionKind.RESTOCK:
            return f"restock item {self.item_id} with {self.count} pair(s)"
        return f"release product {self.product_id} now"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    who: str
    action: str
    target: str
    ok: bool
    result: str

    def view(self) -> dict:
        return {"id": self.id, "at": self.at.isoformat(), "who": self.who, "action": self.action,
                "target": self.target, "ok": self.ok, "result": self.result}


def _whole(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} is a whole number from {low} to {high}")
    return value


def parse_action(body: object, now: datetime | None = None) -> AdminAction:
    """An action from the dashboard's JSON; ValueError says what is wrong with it."""
    if not isinstance(body, dict):
        raise ValueError("send a JSON object: {\"action\": …}")
    try:
        kind = ActionKind(body.get("action"))
    except ValueError:
        raise ValueError(f"action is one of: {', '.join(ACTIONS)}") from None
    if kind not in ACTIONS:
        raise ValueError(f"action is one of: {', '.join(ACTIONS)}")
    if kind is ActionKind.RESTOCK:
        return AdminAction(kind, item_id=_whole(body.get("item_id"), "item_id", 1, 2**31 - 1),
                           count=_whole(body.get("count"), "count", 1, MAX_RESTOCK))
    product_id = _whole(body.get("product_id"), "product_id", 1, 2**31 - 1)
    if kind is not ActionKind.SCHEDULE:
        return AdminAction(kind, product_id=product_id)
    at = body.get("at")
    try:
        when = datetime.fromisoformat(at) if isinstance(at, str) and len(at) <= 40 else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError("at is a time with its zone (ISO 8601): 2026-12-01T18:00:00+00:00")
    when = when.astimezone(timezone.utc)
    if when <= (now or datetime.now(timezone.utc)):
        raise ValueError(f"the release time {when.isoformat()} is in the past")
    return AdminAction(kind, product_id=product_id, at=when)


def admin_name(name: object) -> str:
    """Who an admin says they are (the audit's "who"): trimmed, printable, at most MAX_WHO_CHARS."""
    text = "".join(ch for ch in str(name or "") if ch.isprintable()).strip()[:MAX_WHO_CHARS]
    return text or "admin"
