"""How often one client address may try something costly (a sign-up, a sign-in): a sliding window
of the last attempts per address, and a bound on how many addresses are remembered, so that a
flood from many addresses holds no more memory than the bound (the oldest are forgotten first)."""

from __future__ import annotations

from collections import OrderedDict, deque


class Throttle:
    def __init__(self, per_window: int, window_s: float = 60.0, addresses_kept: int = 50_000):
        self.per_window = per_window
        self.window_s = window_s
        self.addresses_kept = addresses_kept
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_s(self, address: str, now: float) -> float:
        """0 when the address may try now (the attempt is counted); else the seconds until it may."""
        if self.per_window <= 0:
            return 0.0  # (off)
        attempts = self._attempts.get(address)
        if attempts is None:
            attempts = self._attempts[address] = deque()
            while len(self._attempts) > self.addresses_kept:
                self._attempts.popitem(last=False)
        else:
            self._attempts.move_to_end(address)
        while attempts and attempts[0] <= now - self.window_s:
            attempts.popleft()
        if len(attempts) >= self.per_window:
            return attempts[0] + self.window_s - now
        attempts.append(now)
        return 0.0

    def __len__(self) -> int:
        return len(self._attempts)
