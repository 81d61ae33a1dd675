"""The Ray ports of the admin dashboard and the tab trackers: the figures the dashboard reads from
the cluster's actors (`RayFeeds`, serve/dashboard.py's `Feeds`), and the tab reports a channel
replica sends to the presence actor (`PresenceReports`). Made in sneakers23/assembly.py."""

from __future__ import annotations

import asyncio

from sneakers23.domain.presence import BoardRead, Report


class RayFeeds:
    """The figures from the cluster's actors (found by name: the store's start makes them)."""

    def __init__(self):
        self._presence = None
        self._others: tuple | None = None  # (activity actor, replication actor or None)

    async def _presence_actor(self):
        if self._presence is None:
            from sneakers23.actors.presence import find_presence

            self._presence = await asyncio.to_thread(find_presence)
        return self._presence

    async def _other_actors(self) -> tuple:
        if self._others is None or self._others[1] is None:
            from sneakers23.actors.activity import find_activity
            from sneakers23.cluster import replicator

            self._others = (await asyncio.to_thread(find_activity), await asyncio.to_thread(replicator))
        return self._others

    async def follow_presence(self, epoch: str, cursor: int) -> BoardRead:
        try:
            return await (await self._presence_actor()).follow.remote(epoch, cursor)
        except Exception:
            self._presence = None
            raise

    async def figures(self) -> dict:
        presence = await self._presence_actor()
        activity, replication = await self._other_actors()
        calls = {"nodes": presence.nodes.remote(), "activity": activity.last_minute.remote()}
        if replication is not None:
            calls["lags"] = replication.lags.remote()
        outcomes = await asyncio.gather(*calls.values(), return_exceptions=True)
        if any(isinstance(outcome, BaseException) for outcome in outcomes):
            self._presence = self._others = None  # found again next time (one may have been replaced)
        return {name: outcome for name, outcome in zip(calls, outcomes) if not isinstance(outcome, BaseException)}


class PresenceReports:
    """Hands a replica's tab reports to the cluster's presence actor (found when first needed)."""

    def __init__(self):
        self._actor = None

    async def send(self, report: Report) -> bool:
        if self._actor is None:
            from sneakers23.actors.presence import find_presence

            self._actor = await asyncio.to_thread(find_presence)  # (ValueError: not running; tried again)
        try:
            return await self._actor.report.remote(report)
        except Exception:
            self._actor = None  # found again next time: it may have been replaced
            raise
