"""The admin dashboard's channel (serve/dashboard.py) without a cluster: a socket never outlives
its session."""

from __future__ import annotations

import asyncio
import time

from harness.waiting import until
from sneakers23.domain.presence import BoardRead
from sneakers23.serve.admin_gate import AdminSession
from sneakers23.serve.dashboard import ADMIN_SCOPE_KEY, DashboardChannels
from tests.support import aio


class Feeds:
    async def follow_presence(self, epoch, cursor):
        raise RuntimeError("not followed here")

    async def figures(self):
        return {}


class Socket:
    def __init__(self, session: AdminSession):
        self.scope = {ADMIN_SCOPE_KEY: session}
        self.closed = None

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class Connection:
    def __init__(self, session: AdminSession):
        self.websocket = Socket(session)


def test_a_dashboard_whose_session_ended_is_closed_and_the_others_stay():
    now = time.time()
    ended = Connection(AdminSession("Ada", "", "s1", now - 1))
    live = Connection(AdminSession("Bob", "", "s2", now + 3600))
    dashboards = DashboardChannels(live=None, feeds=Feeds())
    dashboards._admins |= {ended, live}

    aio.run(dashboards.close_expired(now))

    assert ended.websocket.closed == (1008, "session expired") and live.websocket.closed is None
    assert dashboards._admins == {live}


def test_presence_is_mirrored_only_while_a_dashboard_is_open():
    class Following(Feeds):
        def __init__(self):
            self.reads = 0

        async def follow_presence(self, epoch, cursor):
            self.reads += 1
            await asyncio.sleep(0.001)
            return BoardRead(epoch or "e", cursor + 1, state={} if not epoch else None)

    async def scenario():
        feeds = Following()

        class Live:
            def products(self):
                return []

        dashboards = DashboardChannels(live=Live(), feeds=feeds)
        admin = Connection(AdminSession("Ada", "", "s1", time.time() + 3600))
        dashboards._admins.add(admin)
        dashboards._start()
        await until(lambda: feeds.reads >= 3, what="the mirror following the board")
        dashboards.leave(admin, "admin:dashboard")
        await asyncio.sleep(0)  # (the cancelled follower ends at its next step)
        after_leave = feeds.reads
        for _ in range(20):
            await asyncio.sleep(0.002)
        return after_leave, feeds.reads, dashboards._mirror.ready.is_set()

    after_leave, later, ready = aio.run(scenario())
    assert later <= after_leave + 1, "no dashboard open: the board is not followed"
    assert not ready, "the next dashboard waits for the whole state"
