"""The shoppers' sockets, one of the store's three Serve applications (`channels`, route
/product_socket): Phoenix-protocol WebSockets, each carrying a tab's product channels, its cart
channel and its presence. Long-lived: every open socket holds one of the replica's request slots
for its whole life, so this deployment gets a limit in the thousands, on replicas of its own (the
pages are in storefront.py).

Joins and pushes are read from the node's live catalog (memory); cart changes go to the database
through the inventory API. `build_channels` is the import path of the Serve config file.
"""


import asyncio
import logging

from fastapi import FastAPI, WebSocket
import ray
from ray import serve

from sneakers23 import assembly
from sneakers23.loop_stalls import Freezer, LoopStalls, collect_young_less_often
from sneakers23.serve.carts import CartChannels
from sneakers23.domain.throttle import Throttle
from sneakers23.serve.proof_of_work import ProofsOfWork
from sneakers23.serve.queue import QueueChannels
from sneakers23.serve.channels import ChannelHub
from sneakers23.serve.guards import install_door, tune_replica_server
from sneakers23.serve.placement import on_every_node
from sneakers23.serve.presence import TabTracker
from sneakers23.serve.replica import BACKPRESSURE, QUIET, READY_WAIT_S, deployment_settings
from sneakers23.serve.shoppers import CartTokens, SessionCookies, ShopperCookies
from sneakers23.settings import Settings
from sneakers23.tasks import keep

log = logging.getLogger(__name__)

SOCKETS_PER_REPLICA = 20_000
METRICS_EVERY_S = 5.0
FREEZE_CHECK_S = 1.0

channels_api = FastAPI(title="Sneakers23 channels", docs_url=None, redoc_url=None, openapi_url=None)
install_door(channels_api)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=SOCKETS_PER_REPLICA,
                  max_queued_requests=1_000, backpressure_config=BACKPRESSURE, logging_config=QUIET)
@serve.ingress(channels_api)
class ShopperSockets:
    async def __init__(self, settings: Settings):
        tune_replica_server(settings)
        self.live = assembly.live_catalog(settings)
        self.node_id = ray.get_runtime_context().get_node_id()
        # Every shopper tab (a joined cart channel) is reported to the cluster's presence board;
        # with tracking off, the reports (a heartbeat a second) still carry the socket count.
        self.tabs = TabTracker(self.node_id, assembly.presence_reports().send, lambda: self.hub.sockets)
        # Cart changes are written through the inventory (then published); no purchases here.
        carts_inventory = assembly.cluster_inventory(settings, through_sales=False)
        carts = CartChannels(self.live, carts_inventory,
                             CartTokens(settings.secret_key), settings.max_pairs_per_product,
                             self.tabs if settings.track_presence else None, ShopperCookies(settings.secret_key),
                             SessionCookies(settings.secret_key))
        # A queued drop's tabs: their places in its waiting room (taken at the join), told as the line moves.
        queues = QueueChannels(self.live, carts_inventory, SessionCookies(settings.secret_key),
                               ProofsOfWork(settings.secret_key, settings.entry_proof_of_work_max_number, purpose="queue"),
                               Throttle(settings.entries_per_address_per_hour, window_s=3600))
        self.hub = ChannelHub(self.live, [carts, queues])
        self.carts = carts
        self.live.subscribe(self.hub.publish)
        self.live.start()
        self._tasks: set[asyncio.Task] = set()
        keep(self._tasks, asyncio.get_running_loop().create_task(self.tabs.report_forever()))
        # Every socket of the replica waits while its loop is stopped: its longest stalls, and its
        # full collections (the usual cause at thousands of sockets), in `sockets` and the metrics.
        self.stalls = LoopStalls()
        self.stalls.watch_collections()
        keep(self._tasks, asyncio.get_running_loop().create_task(self.stalls.watch_forever()))
        keep(self._tasks, asyncio.get_running_loop().create_task(self._metrics_forever()))
        # … and keeps them short: the objects of a burst of sockets, frozen once it settles, and
        # young collections made rarer (a pass over 10,000 tabs makes 20,000 lasting objects).
        self.freezer = Freezer(self.stalls)
        collect_young_less_often()
        keep(self._tasks, asyncio.get_running_loop().create_task(self._freeze_forever()))
        await self.live.wait_ready(READY_WAIT_S)

    async def _metrics_forever(self) -> None:
        from ray.util import metrics

        stall = metrics.Gauge("sneakers23_channel_loop_stall_ms", "The channel replica's longest event-loop stall "
                              "within the last minute", tag_keys=("node",))
        collection = metrics.Gauge("sneakers23_channel_full_collection_ms", "The channel replica's longest full "
                                   "garbage collection within the last minute", tag_keys=("node",))
        while True:
            try:
                figures = self.stalls.figures()
                stall.set(figures["loop_stall_ms"], tags={"node": self.node_id})
                collection.set(figures["full_collection_ms"], tags={"node": self.node_id})
            except Exception:  # (never the end of the figures)
                log.exception("the loop's figures could not be exported")
            await asyncio.sleep(METRICS_EVERY_S)

    async def _freeze_forever(self) -> None:
        while True:
            await asyncio.sleep(FREEZE_CHECK_S)
            self.freezer.check(*self.hub.opened_and_closed, busy=self.hub.pushing or self.carts.pushing)

    @channels_api.websocket("/websocket")
    async def socket(self, websocket: WebSocket):
        if not await self.live.wait_ready():
            await websocket.accept()
            await websocket.close(code=1013, reason="the store is opening: try again")
            return
        await self.hub.serve(websocket)

    async def sockets(self) -> dict:
        """How many shoppers this replica holds, on which node, and how long its loop has stopped
        (`handle.broadcast("sockets")` asks every replica; `sneakers23 status` shows it)."""
        return {"node_id": self.node_id, "sockets": self.hub.sockets, "tabs": self.tabs.tabs, **self.stalls.figures(),
                "freezes": self.freezer.freezes, "refreezes": self.freezer.refreezes}

    async def drop_sockets(self, refuse_for_s: float = 0.0) -> int:
        """Close every socket (and refuse new ones for a while): for drills and tests of re-sync."""
        return await self.hub.drop_all(refuse_for_s)


def build_channels(args: dict):
    # One per node: each holds thousands of sockets and reads its own node's cache.
    return ShopperSockets.options(**on_every_node(1)).bind(deployment_settings(args))
