"""The staff's actions from the dashboard, as the rules read them."""

from datetime import datetime, timezone

import pytest

from sneakers23.domain.admin import ActionKind, AdminAction, admin_name, parse_action

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def test_each_action_is_read_from_its_json():
    assert parse_action({"action": "release", "product_id": 2}, NOW) == AdminAction(ActionKind.RELEASE, product_id=2)
    assert parse_action({"action": "cancel_schedule", "product_id": "1"}, NOW).product_id == 1
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
])
def test_a_bad_action_says_what_is_wrong(body, says):
    with pytest.raises(ValueError, match=says):
        parse_action(body, NOW)


def test_an_admin_name_is_short_and_printable():
    assert admin_name("  Ada\n\x00 ") == "Ada"
    assert admin_name("") == "admin" and len(admin_name("x" * 500)) == 64
