"""The staff desk: the staff's actions, carried out through the shop, and the audit that records
every one of them however it went, with the logins, logouts and locks of the admin's door."""

from __future__ import annotations

from datetime import datetime, timedelta

from sneakers23.db import admin, draws
from sneakers23.db.unit_of_work import Database
from sneakers23.domain.admin import ActionKind, AdminAction, AuditEntry, FailedLogin
from sneakers23.domain.drops import DropMode
from sneakers23.domain.words import counted
from sneakers23.errors import AlreadyReleased, DropModeRefused, NotFound
from sneakers23.inventory.accounts import AccountRefused, Accounts
from sneakers23.inventory.shop import Shop
from sneakers23.inventory.waiting_rooms import WaitingRooms

ONLY_SIGNED_IN = "; sold to signed-in shoppers only"
ACCOUNT_ACTIONS = (ActionKind.LOOK_UP_ACCOUNT, ActionKind.LOCK_ACCOUNT, ActionKind.UNLOCK_ACCOUNT)


class StaffDesk:
    def __init__(self, database: Database, shop: Shop, accounts: Accounts, waiting_rooms: WaitingRooms):
        self.database = database
        self.shop = shop
        self.accounts = accounts
        self.waiting_rooms = waiting_rooms

    def act(self, who: str, action: AdminAction, client: str = "") -> AuditEntry:
        """Carry out a staff action through the shop (release now, schedule or cancel a release,
        restock, sign-in required or not, the drop mode), then write it to the audit with its
        result. A refusal (an unknown product, a product already out) is a result, not an error;
        only a database that is away raises."""
        try:
            ok, result = True, self._carry_out(action)
        except (ValueError, NotFound, AlreadyReleased, DropModeRefused) as error:
            ok, result = False, str(error)
        with self.database.transaction() as unit:
            return admin.record(unit.connection, who, action.kind, action.target, ok, result, client)

    def _carry_out(self, action: AdminAction) -> str:
        if action.kind is ActionKind.RELEASE:
            outcome = self.shop.release(action.product_id)
            return "released" if outcome.newly_released else "it was already released"
        if action.kind is ActionKind.SCHEDULE:
            change = self.shop.schedule_release(action.product_id, action.at)
            return f"goes on sale at {action.at.isoformat()}" + (ONLY_SIGNED_IN if change.sign_in_required else "")
        if action.kind is ActionKind.CANCEL_SCHEDULE:
            self.shop.schedule_release(action.product_id, None)
            return "no release time any more"
        if action.kind is ActionKind.SET_DROP_MODE:
            change = self.shop.set_drop_mode(action.product_id, action.mode)
            said = change.drop_mode.describe() + (ONLY_SIGNED_IN if change.sign_in_required else "")
            if change.drop_mode is DropMode.DRAW:  # (the commitment in the audit too, as on the product page)
                with self.database.reading() as connection:
                    said += f"; its shuffle is committed to the seed whose SHA-256 is {draws.state(connection, action.product_id).commitment}"
            return said
        if action.kind is ActionKind.SET_QUEUE_PACE:
            self.waiting_rooms.set_queue_pace(action.product_id, action.pace)
            return ("lets in as many a minute as there are pairs left (the default)" if action.pace is None
                    else f"lets in {action.pace:g} a minute")
        if action.kind in (ActionKind.REQUIRE_SIGN_IN, ActionKind.ALLOW_GUESTS):
            required = action.kind is ActionKind.REQUIRE_SIGN_IN
            self.shop.require_sign_in(action.product_id, required)
            return "sold only to signed-in shoppers" if required else "sold to guests too"
        change = self.shop.restock(action.item_id, action.count)
        return f"{counted(change.available_count, 'pair')} available"

    def act_on_account(self, who: str, kind: ActionKind, account: str, client: str = "") -> tuple[AuditEntry, str]:
        """Look a shopper's account up (by its id or address), lock it or unlock it; written to the
        audit however it went. Returns the audit entry, and what the staff see of the account."""
        if kind not in ACCOUNT_ACTIONS:
            raise ValueError(f"not an action on an account: {kind}")
        target, seen = f"account {account[:48]}", ""
        try:
            found = self.accounts.find_account(account)
            target = f"account {found.id}"
            if kind is not ActionKind.LOOK_UP_ACCOUNT:
                found = self.accounts.lock_account(found.id, kind is ActionKind.LOCK_ACCOUNT)
            seen = self._account_seen(found)
            ok, result = True, {ActionKind.LOCK_ACCOUNT: "locked: its sessions ended and its cart was emptied",
                                ActionKind.UNLOCK_ACCOUNT: "unlocked"}.get(kind, "looked up")
        except AccountRefused as refused:
            ok, result = False, str(refused)
        with self.database.transaction() as unit:
            return admin.record(unit.connection, who, kind, target, ok, result, client), seen

    def _account_seen(self, account) -> str:
        from sneakers23.domain.accounts import account_shopper_id

        pairs = len(self.shop.orders(account_shopper_id(account.id)))
        sessions = len(self.accounts.sessions(account.id))
        return (f"account {account.id}: {account.email}, {'verified' if account.verified else 'not verified'}, "
                f"{'LOCKED' if account.locked else 'not locked'}, signed up {account.created_at:%Y-%m-%d %H:%M} UTC, "
                f"{counted(sessions, 'session')}, {counted(pairs, 'pair')} bought")

    def record_login(self, who: str, ok: bool, result: str, client: str = "") -> AuditEntry:
        with self.database.transaction() as unit:
            return admin.record(unit.connection, who, ActionKind.LOGIN, "admin", ok, result, client)

    def record_logout(self, who: str, session_id: str, client: str = "") -> AuditEntry:
        with self.database.transaction() as unit:
            return admin.record(unit.connection, who, ActionKind.LOGOUT, f"session {session_id}", True, "logged out", client)

    def sessions_logged_out(self, since: datetime) -> set[str]:
        """The ids of the admin sessions logged out since then (they stay revoked)."""
        with self.database.reading() as connection:
            return {target.removeprefix("session ") for target in admin.logged_out_since(connection, since)}

    def failed_logins(self, window: timedelta) -> list[FailedLogin]:
        """Logins failed within the window (since the last unlock)."""
        with self.database.reading() as connection:
            return admin.failed_logins(connection, window)

    def record_lock(self, failures: int) -> AuditEntry:
        """The throttle's last resort began: every login waits (failures from everywhere)."""
        with self.database.transaction() as unit:
            return admin.record(unit.connection, "throttle", ActionKind.LOCK_LOGINS, "admin", True,
                                f"{failures} failed logins within a minute, from everywhere: every login waits", "")

    def unlock_logins(self, who: str) -> AuditEntry:
        """Let logins through again at once, past the throttle (after an attack has stopped)."""
        with self.database.transaction() as unit:
            return admin.record(unit.connection, who, ActionKind.UNLOCK_LOGINS, "admin", True, "logins unlocked", "")

    def admin_audit(self, limit: int = 50) -> list[AuditEntry]:
        """The newest entries of the audit first."""
        with self.database.reading() as connection:
            return admin.recent(connection, limit)
