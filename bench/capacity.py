"""The capacity model of docs/capacity.md: how many nodes a drop of N shoppers needs, from figures
measured on one 2-core node (each with where it was measured), and which of the cluster's single
points caps it first. A figure not measured yet is None, and the model says so rather than guess.

    .venv/bin/python -m bench.capacity [--shoppers 100000,1000000] [--pairs 10000] [--burst-s 1] [--waiting 0.8]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

# --- what one node (2 cores) does, measured (the lower figure of the runs) ---

PER_NODE = {
    # name: (a second, where it was measured)
    "catalog pages": (2_443, "docs/performance.md, Catalog page: GET / on the chosen path, 2,443-3,385 req/s"),
    "purchases": (1_067, "README and docs/performance.md, The drop engine: a stampede via HTTP, 1,067-1,356 attempts/s"),
    "checkouts": (458, "docs/performance.md, Carts and checkout: POST /checkout of one pair, 458-576 req/s"),
    "refusals": (1_832, "docs/performance.md, The drop engine: POST purchase refused sold_out at the edge, "
                        "1,832-2,826 req/s (a checkout of a sold-out size is refused from memory too)"),
    "cart adds": (None, "not measured alone: a rehearsal's adds wait with its purchases (bench/rehearsal.py)"),
}
SOCKETS_PER_NODE = {
    "through HAProxy": (7_590, "docs/performance.md, 10,000 sockets on one node: 20,000 descriptors, 2.5 a connection"),
    "one channel replica's cap": (20_000, "sneakers23/serve/sockets.py SOCKETS_PER_REPLICA (direct ingress held 10,000)"),
}
PUSH_COST_S = (80e-6, "docs/performance.md, A queue of 10,000 tabs: 3,000 position pushes a second took 0.20-0.30 "
                      "of a core, 67-100 us each")
IDLE_SOCKETS_CORE = (0.064 / 5_000, "bench/socket_memory.py: 5,000 sockets sitting and sending heartbeats (every 25 s) "
                                    "kept the channel replica 0.064 of a core busy, its own idle included "
                                    "(0.084 the same day with uvicorn's own pings, off since 2026-12-05)")
SOCKET_MEMORY_KIB = (55.5, "bench/socket_memory.py: the channel replica's resident memory, 204 -> 475 MiB for 5,000 sockets")

# What a first-come drop asks of the replication actor: each change it makes goes to every node.
CART_CHANGES_PER_PAIR = (2.3, "docs/performance.md, A whole drop, rehearsed: 600-1,400 checkouts for 520 pairs at "
                              "2,000 shoppers, half pressing buy and half adding to the cart; each cart changed twice "
                              "(the add, then emptied or the size taken out): 2.3-5.4 cart changes a pair sold")
REPORT_WINDOW_S = (0.05, "serve/presence.py: a node's tab tracker gathers its changes for 50 ms (GATHER_S), sends "
                         "them as one report and waits for its reply before the next, however many tabs it holds")
LEVEL_CHANGES_PER_PAIR = (1.0, "at most one availability change a pair sold (a group commit of several pairs makes one)")
GROUP_SIZE = (16, "sneakers23/settings.py replication_group_size: the nodes of one relay's group")
DIRECT_CARRIES = (69_000, "bench/replication_ceiling.py --burst, to each cache itself (up to GROUP_SIZE nodes there "
                          "are no relays): 14.1-15.6 us of its CPU a change a node on 2026-12-05")
RELAY_CARRIES = (113_000, "bench/replication_ceiling.py --burst --group-size 16: a relay's CPU a change a cache, "
                          "4.9-8.8 us (8.8 at 529 nodes, 34 relays sharing 2 cores): changes to caches a second")

# --- the cluster's single points: one of each, whatever the number of nodes ---

SINGLE_POINTS = {
    # name: (its ceiling, its unit, what a drop asks of it per shopper or per node, where measured)
    "PostgreSQL, one product's sales (group commit)": (
        7_435, "pairs a second", "the drop's pairs, once (refusals after a sell-out come from memory)",
        "docs/performance.md, The drop engine: 7,435-8,772 pairs a second on one hot size"),
    "the replication actor": (
        58_000, "changes carried to relays a second (each change x each group of nodes) in a drop's burst",
        "every change, to every group's relay (and each relay, to its group's caches)",
        "bench/replication_ceiling.py --burst --group-size 16, docs/performance.md: 33,000 changes at once, 10 a "
        "publish, to 62-529 nodes through 4-34 relays: 11-19 us of its CPU a change a relay (17 at 529 nodes); "
        "to each cache itself, as until 2026-12-05, 14 us a change a node, 8-13 on 2026-12-04"),
    "the presence actor": (
        898, "reports a second (a node's tab changes since its last, one in flight a node)",
        "every tab opened or closed, from every node",
        "bench/presence_ceiling.py, docs/performance.md: 128 nodes, 898-1,270 reports a second taken at 0.76-0.77 "
        "of a core, every change shown, lag p99 252-454 ms; a node's next report waits for its last reply, so "
        "more nodes make its lag grow, not its work"),
    "the release clock": (
        4, "reads of the next release time a second (its pace, not a ceiling)", "one release per product, at its time",
        "actors/release_clock.py: every 0.25 s, and woken at each release's time"),
    "a queued drop's keeper": (
        None, "admissions a second", "one per shopper let in", "not measured as a ceiling (bench/queue.py)"),
}


@dataclass
class Need:
    what: str
    nodes: int | None
    why: str


def nodes_for(shoppers: int, waiting: float, burst_s: float, pairs: int, buy_now: float = 0.5) -> list[Need]:
    """The nodes a first-come drop needs: `waiting` of the shoppers on the page at the release,
    all pressing within `burst_s` (the others opening the page meanwhile); `pairs` are sold, half
    by the buy button and half through the cart, and the rest are refused from memory. The burst's
    requests share each node's two cores, so their node-seconds add up."""
    pressing = shoppers * waiting
    sold = min(pairs, pressing)
    node_seconds = {
        "pairs bought with the button": sold * buy_now / PER_NODE["purchases"][0],
        "pairs bought through a checkout": sold * (1 - buy_now) / PER_NODE["checkouts"][0],
        "presses refused from memory (sold out)": (pressing - sold) / PER_NODE["refusals"][0],
        "pages of the late shoppers": shoppers * (1 - waiting) / PER_NODE["catalog pages"][0],
    }
    burst = math.ceil(sum(node_seconds.values()) / burst_s)
    parts = ", ".join(f"{what} {seconds:,.1f}" for what, seconds in node_seconds.items())
    return [
        Need("sockets (through HAProxy)", math.ceil(shoppers / SOCKETS_PER_NODE["through HAProxy"][0]),
             "one socket a shopper"),
        Need("the release's burst", burst, f"node-seconds: {parts}; cart adds not counted (not measured alone)"),
        Need("sockets sitting (heartbeats, memory)", None,
             f"{SOCKETS_PER_NODE['through HAProxy'][0] * IDLE_SOCKETS_CORE[0]:.2f} of a core and "
             f"{SOCKETS_PER_NODE['through HAProxy'][0] * SOCKET_MEMORY_KIB[0] / 1024:,.0f} MiB a node at "
             f"{SOCKETS_PER_NODE['through HAProxy'][0]:,} sockets: not a limit"),
    ]


def replicated_changes(pairs: int) -> int:
    """The changes a first-come drop of `pairs` makes for every node's cache (half its shoppers
    through the cart, as measured): the carts' and the sizes' levels."""
    return round(pairs * (CART_CHANGES_PER_PAIR[0] + LEVEL_CHANGES_PER_PAIR[0]))


def report(shoppers: int, waiting: float, burst_s: float, pairs: int) -> str:
    needs = nodes_for(shoppers, waiting, burst_s, pairs)
    lines = [f"{shoppers:,} shoppers for {pairs:,} pairs, {waiting:.0%} waiting at the release, pressing within "
             f"{burst_s:g} s:"]
    for need in needs:
        lines.append(f"  {need.what:44} {'-' if need.nodes is None else format(need.nodes, ','):>7} nodes  ({need.why})")
    most = max(needs, key=lambda need: need.nodes or 0)
    lines.append(f"  => {most.nodes:,} nodes, set by {most.what}")
    nodes = most.nodes
    lines.append("  the single points at that size:")
    for name, (ceiling, unit, asks, source) in SINGLE_POINTS.items():
        if name.startswith("the replication actor"):
            changes = replicated_changes(pairs)
            if nodes <= GROUP_SIZE[0]:  # (no relays: it calls each cache itself)
                carried_s = changes * nodes / DIRECT_CARRIES[0]
                how = f"{changes:,} changes x {nodes:,} caches, no relays"
            else:
                groups = math.ceil(nodes / GROUP_SIZE[0])
                by_root, by_relay = changes * groups / ceiling, changes * GROUP_SIZE[0] / RELAY_CARRIES[0]
                carried_s = max(by_root, by_relay)
                how = (f"{changes:,} changes x {groups:,} relays = {changes * groups:,} deliveries ({by_root:,.1f} s), "
                       f"each relay's {GROUP_SIZE[0]} caches ({by_relay:,.1f} s)")
            asked = (f"{how}: about {carried_s:,.0f} s until every node has them"
                     f"{'  <= CAPS FIRST' if carried_s > burst_s else ''}")
        elif name.startswith("the presence actor"):
            lag_s = REPORT_WINDOW_S[0] + nodes / ceiling
            asked = (f"{shoppers:,} tabs opening on {nodes:,} nodes: each node's report every {lag_s:.2f} s, the "
                     f"dashboard that much behind (not measured past 128 nodes)")
        else:
            asked = asks
        said = "NOT MEASURED" if ceiling is None else f"{ceiling:,} {unit}"
        lines.append(f"    {name:48} ceiling {said:32} asked: {asked}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shoppers", default="100000,1000000")
    parser.add_argument("--waiting", type=float, default=0.8, help="the share on the page at the release")
    parser.add_argument("--burst-s", type=float, default=1.0, help="how long their first press is spread over")
    parser.add_argument("--pairs", type=int, default=10_000, help="the drop's pairs")
    args = parser.parse_args()
    for shoppers in (int(n) for n in args.shoppers.split(",")):
        print(report(shoppers, args.waiting, args.burst_s, args.pairs))
        print()
    print("Figures per node (2 cores), and where they were measured:")
    for name, (value, source) in {**PER_NODE, **SOCKETS_PER_NODE}.items():
        print(f"  {name:28} {'not measured' if value is None else format(value, ',')}: {source}")
    print(f"  {'a push':28} {PUSH_COST_S[0] * 1e6:.0f} us of CPU: {PUSH_COST_S[1]}")
    print(f"  {'a socket sitting':28} {IDLE_SOCKETS_CORE[0] * 1e6:.0f} us of CPU a second: {IDLE_SOCKETS_CORE[1]}")
    print(f"  {'a socket in memory':28} {SOCKET_MEMORY_KIB[0]} KiB: {SOCKET_MEMORY_KIB[1]}")
    print(f"  {'cart changes a pair sold':28} {CART_CHANGES_PER_PAIR[0]}: {CART_CHANGES_PER_PAIR[1]}")
    print(f"  {'level changes a pair sold':28} {LEVEL_CHANGES_PER_PAIR[0]}: {LEVEL_CHANGES_PER_PAIR[1]}")
    print(f"  {'a relay':28} {RELAY_CARRIES[0]:,}: {RELAY_CARRIES[1]}")
    print("The single points' ceilings, and where they were measured:")
    for name, (ceiling, unit, _asks, source) in SINGLE_POINTS.items():
        print(f"  {name:28} {'not measured' if ceiling is None else format(ceiling, ',')} {unit}: {source}")


if __name__ == "__main__":
    main()
