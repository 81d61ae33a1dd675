"""The sliding window of attempts per client address (domain/throttle.py)."""

from sneakers23.domain.throttle import Throttle


def test_an_address_past_its_attempts_waits_until_the_oldest_leaves_the_window():
    throttle = Throttle(per_window=3, window_s=60)
    assert [throttle.wait_s("127.0.0.2", t) for t in (0, 1, 2)] == [0, 0, 0]
    assert throttle.wait_s("127.0.0.2", 10) == 50  # the first attempt leaves the window at 60
    assert throttle.wait_s("127.0.0.3", 10) == 0  # another address is not held
    assert throttle.wait_s("127.0.0.2", 60) == 0
    assert throttle.wait_s("127.0.0.2", 60.5) == 0.5  # (the refused attempt at 10 was not counted)


def test_a_flood_of_addresses_keeps_at_most_the_bound():
    throttle = Throttle(per_window=1, addresses_kept=100)
    for n in range(1_000):
        throttle.wait_s(f"10.0.{n // 256}.{n % 256}", 0)
    assert len(throttle) == 100
    assert throttle.wait_s("10.0.3.231", 1) > 0  # (the newest are the ones kept)


def test_zero_turns_it_off():
    throttle = Throttle(per_window=0)
    assert all(throttle.wait_s("127.0.0.2", 0) == 0 for _ in range(100)) and len(throttle) == 0
