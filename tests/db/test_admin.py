"""The admin audit and the login throttle, on SQLite and PostgreSQL."""

from datetime import datetime, timedelta, timezone

from sneakers23.domain.admin import ActionKind, AdminAction

MINUTE = timedelta(minutes=1)


def test_every_action_is_audited_however_it_went(inventory):
    released = inventory.act("Ada", AdminAction(ActionKind.RELEASE, product_id=1), "10.0.0.1")
    again = inventory.act("Ada", AdminAction(ActionKind.RELEASE, product_id=1))
    unknown = inventory.act("Bob", AdminAction(ActionKind.RESTOCK, item_id=999_999, count=5))
    at = datetime.now(timezone.utc) + timedelta(hours=1)
    scheduled = inventory.act("Bob", AdminAction(ActionKind.SCHEDULE, product_id=2, at=at))
    late = inventory.act("Bob", AdminAction(ActionKind.SCHEDULE, product_id=1, at=at))
    before = inventory.item(1).available_count
    restocked = inventory.act("Bob", AdminAction(ActionKind.RESTOCK, item_id=1, count=5))

    assert (released.ok, released.result) == (True, "released")
    assert (again.ok, again.result) == (True, "it was already released")
    assert not unknown.ok and "no item 999999" in unknown.result
    assert scheduled.ok and inventory.complete_products()[1].release_at is not None
    assert not late.ok and "already released" in late.result
    assert restocked.ok and inventory.item(1).available_count == before + 5
    assert restocked.result == f"{before + 5:,} pairs available"

    audit = inventory.admin_audit()
    assert [entry.id for entry in audit] == [restocked.id, late.id, scheduled.id, unknown.id, again.id, released.id]
    assert (audit[-1].who, audit[-1].action, audit[-1].target) == ("Ada", "release", "product 1")
    assert audit[0].at.tzinfo is not None


def test_failed_logins_of_the_window_count_until_unlocked(inventory):
    assert inventory.failed_logins(MINUTE) == []
    for _ in range(3):
        inventory.record_login("mallory", False, "wrong password", "10.0.0.9")
    inventory.record_login("Ada", True, "logged in", "10.0.0.1")
    failures = inventory.failed_logins(MINUTE)
    assert [(f.client, f.who) for f in failures] == [("10.0.0.9", "mallory")] * 3
    assert all(datetime.now(timezone.utc) - failure.at < MINUTE for failure in failures)
    inventory.unlock_logins("ops@cli")
    assert inventory.failed_logins(MINUTE) == []
    inventory.record_login("mallory", False, "wrong password", "10.0.0.9")
    assert len(inventory.failed_logins(MINUTE)) == 1
    assert [e.action for e in inventory.admin_audit(3)] == ["login", "unlock_logins", "login"]
