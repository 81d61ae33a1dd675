"""The admin dashboard's channel (serve/dashboard.py) without a cluster: a socket never outlives
its session."""

from __future__ import annotations

import time

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
