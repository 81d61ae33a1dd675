"""The staff's actions from the dashboard, as the rules read them."""

from datetime import datetime, timezone

import pytest

from sneakers23.domain.admin import ActionKind, AdminAction, admin_name, parse_action
from sneakers23.domain.drops import DropMode

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def test_each_action_is_read_from_its_json():
    assert parse_action({"action": "release", "product_id": 2}, NOW) == AdminAction(ActionKind.RELEASE, product_id=2)
    assert parse_action({"action": "cancel_schedule", "product_id": "1"}, NOW).product_id == 1
    assert parse_action({"action": "set_drop_mode", "product_id": 2, "mode": "queue"}, NOW) == AdminAction(
        ActionKind.SET_DROP_MODE, product_id=2, mode=DropMode.QUEUE)
    assert parse_action({"action": "restock", "item_id": 3, "count": 10}, NOW) == AdminAction(
        ActionKind.RESTOCK, item_id=3, count=10)
    scheduled = parse_action({"action": "schedule", "product_id": 1, "at": "2026-11-27T13:00:00Z"}, NOW)
    assert scheduled.at == datetime(2026, 11, 27, 13, tzinfo=timezone.utc)
    assert scheduled.describe() == "schedule the release of product 1 at 2026-11-27T13:00:00+00:00"


@pytest.mark.parametrize("body, says", [
    (None, "JSON object"),
    ({"action": "login"}, "action is one of"),
    ({"action": "drop_tables"}, "action is one of"),
    ({"action": "release"}, "product_id"),
    ({"action": "release", "product_id": True}, "product_id"),
    ({"action": "restock", "item_id": 3, "count": 0}, "count"),
    ({"action": "restock", "item_id": 3, "count": 10_001}, "count"),
    ({"action": "schedule", "product_id": 1, "at": "tomorrow"}, "with its zone"),
    ({"action": "schedule", "product_id": 1, "at": "2026-11-27T13:00:00"}, "with its zone"),
    ({"action": "schedule", "product_id": 1, "at": "2026-11-27T11:00:00+00:00"}, "in the past"),
    ({"action": "set_drop_mode", "product_id": 1, "mode": "lottery"}, "a drop mode is one of: first-come, queue, draw"),
    ({"action": "set_drop_mode", "product_id": 1}, "a drop mode is one of"),
    ({"action": "set_drop_mode", "mode": "queue"}, "product_id"),
])
def test_a_bad_action_says_what_is_wrong(body, says):
    with pytest.raises(ValueError, match=says):
        parse_action(body, NOW)


def test_an_admin_name_is_short_and_printable():
    assert admin_name("  Ada\n\x00 ") == "Ada"
    assert admin_name("") == "admin" and len(admin_name("x" * 500)) == 64


# --- the login throttle ---

def _failures(count: int, client: str, who: str = "mallory", now=None, every_s: float = 1.0):
    from datetime import datetime, timedelta, timezone

    from sneakers23.domain.admin import FailedLogin

    now = now or datetime.now(timezone.utc)
    return [FailedLogin(now - timedelta(seconds=every_s * i), client, who) for i in range(count)]


def test_an_address_past_the_limit_waits_and_another_address_does_not():
    from datetime import datetime, timezone

    from sneakers23.domain.admin import login_wait

    now = datetime.now(timezone.utc)
    failures = _failures(10, "10.0.0.9", now=now)
    assert login_wait(failures[:9], "10.0.0.9", "mallory", 10, now) == (0, "")
    assert login_wait(failures, "10.0.0.9", "mallory", 10, now) == (60, "address")
    assert login_wait(failures, "10.0.0.1", "Ada", 10, now) == (0, "")  # the staff, elsewhere


def test_each_failure_past_the_limit_doubles_the_wait_up_to_a_cap():
    from datetime import datetime, timedelta, timezone

    from sneakers23.domain.admin import MAX_LOGIN_WAIT_S, login_wait

    now = datetime.now(timezone.utc)
    waits = [login_wait(_failures(10 + extra, "10.0.0.9", now=now), "10.0.0.9", "x", 10, now)[0] for extra in range(6)]
    assert waits == [60, 120, 240, 480, MAX_LOGIN_WAIT_S, MAX_LOGIN_WAIT_S]
    later = now + timedelta(seconds=61)
    assert login_wait(_failures(10, "10.0.0.9", now=now), "10.0.0.9", "x", 10, later) == (0, "")


def test_a_name_is_held_from_every_address_only_later_and_everyone_only_as_the_last_resort():
    from datetime import datetime, timezone

    from sneakers23.domain.admin import locks_everyone, login_wait

    now = datetime.now(timezone.utc)
    spread = [f for i in range(30) for f in _failures(1, f"10.0.1.{i}", "Ada", now=now)]
    assert login_wait(spread, "10.0.2.1", "Ada", 10, now) == (60, "name")
    assert login_wait(spread, "10.0.2.1", "Bob", 10, now) == (0, "")
    crowd = [f for i in range(100) for f in _failures(1, f"10.1.{i}.1", f"n{i}", now=now)]
    assert locks_everyone(crowd, 10, now) and not locks_everyone(crowd[:-1], 10, now)
    wait, scope = login_wait(crowd, "10.0.0.1", "Ada", 10, now)
    assert scope == "everyone" and 0 < wait <= 60
