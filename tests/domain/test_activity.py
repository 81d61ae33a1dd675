"""Sales and refusals per second, for the dashboard's last minute."""

from sneakers23.domain.activity import ActivityWindow, Tally


def test_tallies_from_several_processes_add_up_per_second():
    one, two = Tally(), Tally()
    one.sold(2, 100.2)
    one.refused("purchase:sold_out", 100.9)
    two.sold(1, 100.5)
    two.refused("purchase:sold_out", 101.1, count=3)
    two.refused("cart:limit_reached", 159.0)
    window = ActivityWindow(seconds=60)
    window.add(one.take(), 101.0)
    window.add(two.take(), 101.0)
    assert one.take() == {}
    shown = window.last_minute(159.5)
    assert shown["sold"] == 3 and len(shown["sold_per_second"]) == 60
    assert shown["sold_per_second"][0] == 3  # second 100, the oldest of the window ending at 159
    assert shown["refusals"] == {"purchase:sold_out": 4, "cart:limit_reached": 1}
    later = window.last_minute(160.0)  # second 100 has left the window; 101 is its oldest
    assert later["sold"] == 0 and later["refusals"] == {"purchase:sold_out": 3, "cart:limit_reached": 1}


def test_old_seconds_are_let_go():
    window = ActivityWindow(seconds=60)
    window.add({10: (5, {})}, 10.0)
    window.add({500: (1, {})}, 500.0)
    assert window.last_minute(500.0)["sold"] == 1
    window.add({20: (9, {})}, 500.0)  # held up for minutes: out of every window
    assert window.last_minute(500.0)["sold"] == 1
