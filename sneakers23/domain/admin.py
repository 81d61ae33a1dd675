"""What the shop's staff do from the admin dashboard, and the audit of it: pure rules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum

from sneakers23.domain.drops import DropMode, parse_drop_mode
from sneakers23.domain.ids import parse_id
from sneakers23.domain.words import counted

MAX_RESTOCK = 10_000
MAX_WHO_CHARS = 64


class ActionKind(StrEnum):
    RELEASE = "release"  # now
    SCHEDULE = "schedule"  # a release at a given time
    CANCEL_SCHEDULE = "cancel_schedule"
    RESTOCK = "restock"
    REQUIRE_SIGN_IN = "require_sign_in"  # the product sells only to signed-in shoppers (verified accounts)
    ALLOW_GUESTS = "allow_guests"  # the product sells to anyone again
    SET_DROP_MODE = "set_drop_mode"  # first come, a queue or a draw (domain/drops.py), before the release
    SET_QUEUE_PACE = "set_queue_pace"  # shoppers a queue lets in a minute (None: its default), any time
    LOGIN = "login"  # not asked for: written by the login itself (a failed one counts to its throttle)
    UNLOCK_LOGINS = "unlock_logins"  # an operator's `sneakers23 admin unlock`: the throttle starts again
    LOGOUT = "logout"  # its target names the session, which stays revoked until it would have expired
    LOCK_LOGINS = "lock_logins"  # the throttle's last resort began: failures from everywhere hold every login
    LOOK_UP_ACCOUNT = "look_up_account"  # a shopper's account (`sneakers23 account show`)
    LOCK_ACCOUNT = "lock_account"  # its sessions end, its cart is emptied, its queue places go; it cannot sign in
    UNLOCK_ACCOUNT = "unlock_account"
    DRAW_CLOSED = "draw_closed"  # not asked for: the release clock's close of a draw (its shuffle's record)
    DRAW_FINISHED = "draw_finished"  # not asked for: every pair of a draw given, every entrant told


ACTIONS = (ActionKind.RELEASE, ActionKind.SCHEDULE, ActionKind.CANCEL_SCHEDULE, ActionKind.RESTOCK,
           ActionKind.REQUIRE_SIGN_IN, ActionKind.ALLOW_GUESTS, ActionKind.SET_DROP_MODE, ActionKind.SET_QUEUE_PACE)
MAX_PACE_PER_MINUTE = 1_000_000


@dataclass(frozen=True, slots=True)
class AdminAction:
    kind: ActionKind
    product_id: int | None = None
    item_id: int | None = None
    at: datetime | None = None  # a schedule's release time (UTC-aware)
    count: int | None = None  # a restock's pairs
    mode: DropMode | None = None  # a drop mode to set
    pace: float | None = None  # a queue's shoppers let in a minute (None: its default pace)

    @property
    def target(self) -> str:
        return f"item {self.item_id}" if self.item_id is not None else f"product {self.product_id}"

    def describe(self) -> str:
        if self.kind is ActionKind.SCHEDULE:
            return f"schedule the release of product {self.product_id} at {self.at.isoformat()}"
        if self.kind is ActionKind.CANCEL_SCHEDULE:
            return f"cancel the scheduled release of product {self.product_id}"
        if self.kind is ActionKind.RESTOCK:
            return f"restock item {self.item_id} with {counted(self.count, 'pair')}"
        if self.kind is ActionKind.REQUIRE_SIGN_IN:
            return f"sell product {self.product_id} only to signed-in shoppers"
        if self.kind is ActionKind.ALLOW_GUESTS:
            return f"sell product {self.product_id} to guests too"
        if self.kind is ActionKind.SET_DROP_MODE:
            return f"make product {self.product_id} a {self.mode} drop"
        if self.kind is ActionKind.SET_QUEUE_PACE:
            return (f"let product {self.product_id}'s queue in at "
                    + ("its default pace" if self.pace is None else f"{self.pace:g} shoppers a minute"))
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
    value = parse_id(value.strip() if isinstance(value, str) else value)
    if value is None or not low <= value <= high:
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
    if kind is ActionKind.SET_DROP_MODE:
        return AdminAction(kind, product_id=product_id, mode=parse_drop_mode(body.get("mode")))
    if kind is ActionKind.SET_QUEUE_PACE:
        return AdminAction(kind, product_id=product_id, pace=parse_pace(body.get("per_minute")))
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


def parse_pace(value: object) -> float | None:
    """A queue's pace from the staff's words: shoppers a minute (0 pauses it), or `default` (None)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "default"):
        return None
    try:
        pace = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    except ValueError:
        pace = math.nan
    if not 0 <= pace <= MAX_PACE_PER_MINUTE:  # (NaN too)
        raise ValueError(f"a queue's pace is 0 to {MAX_PACE_PER_MINUTE:,} shoppers a minute, or default")
    return pace


def admin_name(name: object) -> str:
    """Who an admin says they are (the audit's "who"): trimmed, printable, at most MAX_WHO_CHARS."""
    text = "".join(ch for ch in str(name or "") if ch.isprintable()).strip()[:MAX_WHO_CHARS]
    return text or "admin"


# --- the login throttle ---

LOGIN_LOOKBACK = timedelta(minutes=15)  # failures older than this are forgotten
MAX_LOGIN_WAIT_S = 15 * 60
NAME_FACTOR = 3  # a name (free text: the password is shared) is throttled later than an address
EVERYONE_FACTOR = 10  # the last resort: failures from everywhere within a minute


@dataclass(frozen=True, slots=True)
class FailedLogin:
    at: datetime
    client: str  # the address it came from
    who: str


def login_wait(failures: list[FailedLogin], client: str, who: str, limit: int, now: datetime) -> tuple[int, str]:
    """How long a login from `client` as `who` must wait (0: it may try), and which throttle holds
    it: "address", "name" or "everyone". Past `limit` failures of one address, each further failure
    doubles its wait (one minute, two, four, … up to MAX_LOGIN_WAIT_S); a name has its own count;
    only failures from everywhere, ten times the limit within a minute, hold every login."""
    recent = [failure for failure in failures if failure.at > now - LOGIN_LOOKBACK]
    for scope, failed, allowed in (("address", [f for f in recent if f.client == client], limit),
                                   ("name", [f for f in recent if f.who == who], NAME_FACTOR * limit),
                                   ("everyone", _last_minute(recent, now), EVERYONE_FACTOR * limit)):
        if len(failed) < allowed:
            continue
        wait_s = min(MAX_LOGIN_WAIT_S, 60 * 2 ** (len(failed) - allowed))
        if scope == "everyone":  # (until the window holds fewer: the attack has slowed)
            wait_s = 60
            since = sorted(f.at for f in failed)[len(failed) - allowed]
        else:
            since = max(f.at for f in failed)
        left = math.ceil((since + timedelta(seconds=wait_s) - now).total_seconds())
        if left > 0:
            return left, scope
    return 0, ""


def locks_everyone(failures: list[FailedLogin], limit: int, now: datetime) -> bool:
    """The last resort holds: failures from everywhere within a minute reach ten times the limit."""
    return len(_last_minute(failures, now)) >= EVERYONE_FACTOR * limit


def _last_minute(failures: list[FailedLogin], now: datetime) -> list[FailedLogin]:
    return [failure for failure in failures if failure.at > now - timedelta(minutes=1)]
