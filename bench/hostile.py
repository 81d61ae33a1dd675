"""Hostile clients against the store as `sneakers23 serve` runs it (SQLite, one node, Serve's HAProxy
with the store's edge rules and their default caps), each attack beside its baseline of the same run.

The honest side: 50 shoppers, each from an address of its own (127.0.1.1 to 127.0.1.50), each on one
connection, open the page, buy a pair (sold, or refused: sold out, over the limit) and look at
/healthz, 10 requests a second each. They run for `--seconds` without an attack, then for as long
with it; their p99 and the share of answers that are a success or a proper refusal (never a 5xx,
a time-out or a lost connection) are compared. Each attack comes from an address of its own
(127.0.0.10 and up; the minted-shopper churn from a botnet, 127.0.2.0/24), in a process of its own
at the lowest priority: on one 2-core machine the attacker's own CPU would otherwise come out of the
store's (and the honest shoppers') share, which it never does from another machine.

The load generator's own floor: the same honest shoppers against the trivial shop (bench/bare_shop.py,
the same routes answered at once), in the same run.

    .venv/bin/python -m bench.hostile [--seconds 8] [--only NAME] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import tempfile
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import websockets.asyncio.client

from bench.servers import BIN, Process, wait_http
from harness.ports import free_port
from sneakers23.jobs.report import percentile
from sneakers23.serve.shoppers import FORM_TOKEN_HEADER, form_token_in
from harness.attacks import Held, idle_sockets, slow_bodies, slow_headers

HONEST_SHOPPERS = 50
HONEST_RATE = 10  # requests a second, each
ADMIN_PASSWORD = "bench-hostile-admin-password"


# --- the honest side ---

async def honest_shoppers(url: str, seconds: float, item: int) -> dict:
    statuses: list[int] = []
    latencies: list[float] = []

    async def shopper(number: int) -> None:
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.1.{number + 1}", 0), limit=1)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            deadline = time.monotonic() + seconds
            step = 0
            headers: dict[str, str] = {}
            while time.monotonic() < deadline:
                method, path = (("GET", "/"), ("POST", f"/api/items/{item}/purchase"), ("GET", "/healthz"))[step % 3]
                step += 1
                started = time.perf_counter()
                try:
                    async with session.request(method, url + path, headers=headers) as response:
                        page = await response.read()
                        statuses.append(response.status)
                        if path == "/" and response.status == 200:  # the form token a purchase sends
                            headers = {FORM_TOKEN_HEADER: form_token_in(page.decode()) or ""}
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    statuses.append(0)
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(max(0.0, 1 / HONEST_RATE - (time.perf_counter() - started)))

    await asyncio.gather(*(shopper(n) for n in range(HONEST_SHOPPERS)))
    good = sum(1 for status in statuses if 200 <= status < 500 and status not in (408, 429))
    return {"requests": len(statuses), "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1), "answered_share": round(good / len(statuses), 5),
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))}}


# --- the attacks: each runs until its stop event is set, and says what the store did to it ---

async def hold(held: Held, stop: asyncio.Event) -> dict:
    await stop.wait()
    kept = len(held.writers)
    await held.close()
    return {"held": kept, "refused": held.refused, "statuses": {str(k): v for k, v in held.statuses.items()}}


async def attack_slow_headers(store, stop, source):
    return await hold(await slow_headers("127.0.0.1", store.port, 300, source), stop)


async def attack_slow_bodies(store, stop, source):
    return await hold(await slow_bodies("127.0.0.1", store.port, 300, source), stop)


async def attack_idle_sockets(store, stop, source):
    """Up to this machine's descriptor limit for one address: what HAProxy would let in without caps."""
    return await hold(await idle_sockets("127.0.0.1", store.port, 8000, source), stop)


async def attack_deflate_bombs(store, stop, source):
    """Sockets that offer compression and send messages of 1 MiB (or a few KB that inflate to it)."""
    closes: dict[str, int] = {}
    while not stop.is_set():
        try:
            async with websockets.asyncio.client.connect(store.socket_url, compression="deflate", max_size=None,
                                                         local_addr=(source, 0), open_timeout=5) as ws:
                await ws.send("x" * (1024 * 1024))
                await asyncio.wait_for(ws.recv(), 5)
        except Exception as error:  # (what the store did: the close code)
            code = getattr(getattr(error, "rcvd", None), "code", type(error).__name__)
            closes[str(code)] = closes.get(str(code), 0) + 1
    return {"closes": closes}


async def attack_non_reading_sockets(store, stop, source):
    """200 sockets that ask for replies (heartbeats) and never read one."""
    held = Held()
    for _ in range(200):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", store.port, local_addr=(source, 0))
        except OSError:
            held.refused += 1
            continue
        writer.write(_handshake(store.port).encode())
        held.writers.append(writer)
        held.readers.append(reader)
    frame = _masked_text(json.dumps([None, "1", "phoenix", "heartbeat", {}]))
    sent = 0
    while not stop.is_set():
        for writer in held.writers:
            if not writer.is_closing():
                writer.write(frame)
                sent += 1
        await asyncio.sleep(0.05)
    result = await hold(held, _set())
    return {**result, "heartbeats_sent": sent}


async def attack_minted_cart_churn(store, stop, _source):
    """10,000 minted shoppers (a botnet: 127.0.2.0/24) open the page, join their cart, add a size
    and take it out again, as fast as the caps let them (on past the honest shoppers' window)."""
    churned = 0
    semaphore = asyncio.Semaphore(64)

    async def one(number: int) -> None:
        nonlocal churned
        async with semaphore:
            source = f"127.0.2.{number % 250 + 1}"
            connector = aiohttp.TCPConnector(local_addr=(source, 0))
            try:
                async with aiohttp.ClientSession(connector=connector) as session:
                    async with session.get(store.url + "/") as page:
                        text = await page.text()
                shopper = re.search(r'data-cart-id="([0-9a-f]+)" data-cart-token="([^"]+)"', text)
                if shopper is None:
                    return
                async with websockets.asyncio.client.connect(store.socket_url, local_addr=(source, 0)) as ws:
                    topic = f"cart:{shopper.group(1)}"
                    await ws.send(json.dumps(["1", "1", topic, "phx_join", {"token": shopper.group(2)}]))
                    await ws.recv()
                    for ref, event in (("2", "add_item"), ("3", "remove_item")):
                        await ws.send(json.dumps(["1", ref, topic, event, {"item_id": store.item}]))
                        while json.loads(await ws.recv())[1] != ref:
                            pass
                churned += 1
            except Exception:
                pass

    number = 0
    while number < 10_000:
        await asyncio.gather(*(one(n) for n in range(number, number + 250)))
        number += 250
    return {"shoppers": number, "churned": churned}


async def attack_rejoin_flood(store, stop, source):
    """50 sockets joining the same cart topic again and again, at the channels' message rate."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as session:
        async with session.get(store.url + "/") as page:
            shopper = re.search(r'data-cart-id="([0-9a-f]+)" data-cart-token="([^"]+)"', await page.text())
    topic = f"cart:{shopper.group(1)}"
    replies: dict[str, int] = {}

    async def one() -> None:
        async with websockets.asyncio.client.connect(store.socket_url, local_addr=(source, 0)) as ws:
            ref = 0
            while not stop.is_set():
                ref += 1
                await ws.send(json.dumps(["1", str(ref), topic, "phx_join", {"token": shopper.group(2)}]))
                status = json.loads(await ws.recv())[4]["status"]
                replies[status] = replies.get(status, 0) + 1
                await asyncio.sleep(0.02)

    await asyncio.gather(*(one() for _ in range(50)), return_exceptions=True)
    return {"replies": replies}


async def attack_admin_lockout(store, stop, source):
    """Wrong passwords from one address, as fast as it is answered; then the staff log in from theirs."""
    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        while not stop.is_set():
            try:
                status = str(await _admin_login(session, store.url, "a wrong guess"))
            except aiohttp.ClientError:  # (closed unanswered: past twice its cap)
                status = "lost"
            statuses[status] = statuses.get(status, 0) + 1
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0)),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as staff:
        staff_status = await _admin_login(staff, store.url, ADMIN_PASSWORD)
    return {"attacker": statuses, "staff_login": staff_status}


async def attack_bad_ids(store, stop, source):
    return await _flood(store, stop, source, [("POST", "/api/items/%C2%B2/purchase", {}),
                                      ("POST", "/api/items/" + "9" * 4000 + "/purchase", {})])


async def attack_cross_origin_posts(store, stop, source):
    return await _flood(store, stop, source, [("POST", f"/api/items/{store.item}/purchase",
                                       {"Origin": "http://evil.example:9999"})])


ATTACKS = {name.removeprefix("attack_"): value for name, value in globals().items() if name.startswith("attack_")}


# --- helpers ---

async def _flood(store, stop, source, requests) -> dict:
    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0), limit=20),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await (await session.get(store.url + "/")).read()

        async def worker():
            number = 0
            while not stop.is_set():
                method, path, headers = requests[number % len(requests)]
                number += 1
                try:
                    async with session.request(method, store.url + path, headers=headers) as response:
                        await response.read()
                        statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
                except aiohttp.ClientError:
                    statuses["lost"] = statuses.get("lost", 0) + 1

        await asyncio.gather(*(worker() for _ in range(20)))
    return {"statuses": statuses}


async def _admin_login(session, url: str, password: str) -> int:
    async with session.get(url + "/admin/login") as page:
        form = re.search(r'name="form_token" value="([^"]+)"', await page.text())
    if form is None:
        return page.status
    async with session.post(url + "/admin/login", data={"who": "bench", "password": password,
                                                         "form_token": form.group(1)},
                            allow_redirects=False) as answer:
        return answer.status


def _handshake(port: int) -> str:
    return (f"GET /product_socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _set() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


def channel_replica_rss() -> int:
    """Resident memory of this machine's channel replica (the process Serve names after it), bytes."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and "ServeReplica:channels" in (entry / "cmdline").read_text():
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            continue
    return 0


async def memory_back(before: int, within_s: float = 60.0) -> dict:
    """Until the replica's memory is within 10% of `before`, or the time is up."""
    started = time.monotonic()
    after = channel_replica_rss()
    while after > before * 1.1 and time.monotonic() - started < within_s:
        await asyncio.sleep(2)
        after = channel_replica_rss()
    return {"rss_before_mb": round(before / 2**20, 1), "rss_after_mb": round(after / 2**20, 1),
            "back_within_10pct": after <= before * 1.1, "waited_s": round(time.monotonic() - started, 1)}


@dataclass
class StoreAddress:
    port: int
    item: int  # a size with stock, of the released product

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def socket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/product_socket/websocket?vsn=2.0.0"


def start_store(directory: Path) -> tuple[Process, StoreAddress]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RAY_", "SNEAKERS23_"))}
    env.update(SNEAKERS23_DATABASE_URL=f"sqlite:///{directory / 'shop.db'}", SNEAKERS23_ADMIN_PASSWORD=ADMIN_PASSWORD,
               RAY_TMPDIR=tempfile.mkdtemp(prefix="s23hostile-", dir="/tmp"))
    process = Process([str(BIN / "sneakers23"), "serve", "--port", str(port), "--release", "1"], env, "hostile-store")
    wait_http(f"http://127.0.0.1:{port}/healthz", timeout=180)
    product = json.loads(get_text(f"http://127.0.0.1:{port}/api/products"))[0]
    return process, StoreAddress(port, next(item["id"] for item in product["items"] if item["level"] != "out"))


def get_text(url: str) -> str:
    import httpx

    return httpx.get(url, timeout=10).text


def run_attack(args) -> None:
    """(In a process of its own, at the lowest priority: the attacker's machine is not the store's.)"""
    async def attack() -> dict:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(args.seconds, stop.set)
        return await ATTACKS[args.attack](StoreAddress(args.port, args.item), stop, args.source)

    print(json.dumps(asyncio.run(attack())), flush=True)


async def measure(args) -> dict:
    directory = Path(tempfile.mkdtemp(prefix="s23hostile-db-"))
    process, store = start_store(directory)
    try:
        floor_port = free_port()
        bare = Process([str(BIN / "uvicorn"), "bench.bare_shop:app", "--port", str(floor_port), "--log-level",
                        "warning"], dict(os.environ), "hostile-bare-shop")
        wait_http(f"http://127.0.0.1:{floor_port}/healthz")
        floor = await honest_shoppers(f"http://127.0.0.1:{floor_port}", args.seconds, 1)
        bare.stop()
        figures = {"generator_floor": floor, "attacks": {}}
        print(f"generator floor: p99 {floor['p99_ms']} ms, {floor['requests']} requests", flush=True)
        await honest_shoppers(store.url, 3, store.item)  # warm: the product's sales actor starts on a first sale
        for number, name in enumerate(ATTACKS):
            if args.only and name not in args.only:
                continue
            baseline = await honest_shoppers(store.url, args.seconds, store.item)
            rss_before = channel_replica_rss()
            attack_command = [sys.executable, "-m", "bench.hostile", "--attack", name, "--port", str(store.port),
                              "--item", str(store.item), "--source", f"127.0.0.{10 + number}",
                              "--seconds", str(args.seconds + 1)]
            attacker = subprocess.Popen(attack_command, stdout=subprocess.PIPE, text=True,
                                        preexec_fn=lambda: os.nice(19))
            await asyncio.sleep(1)  # the attack is under way
            under = await honest_shoppers(store.url, args.seconds, store.item)
            said, _ = await asyncio.to_thread(attacker.communicate, timeout=300)
            done = json.loads(said.strip().splitlines()[-1]) if said.strip() else {"failed": attacker.returncode}
            row = {"baseline": baseline, "under_attack": under, "attack": done,
                   "p99_ratio": round(under["p99_ms"] / max(baseline["p99_ms"], 0.1), 2)}
            if name in ("deflate_bombs", "minted_cart_churn"):
                row["memory"] = await memory_back(rss_before)
            if name == "minted_cart_churn":
                # The same crowd again: what the first left behind (state, or the allocator's high
                # water mark) shows as growth again only if it is state.
                await asyncio.to_thread(subprocess.run, attack_command, capture_output=True,
                                        preexec_fn=lambda: os.nice(19))
                second = await memory_back(rss_before)
                row["memory"]["rss_after_second_crowd_mb"] = second["rss_after_mb"]
            figures["attacks"][name] = row
            print(f"{name:22} honest p99 {baseline['p99_ms']:7.1f} ms -> {under['p99_ms']:7.1f} ms "
                  f"({row['p99_ratio']}x), answered {under['answered_share']:.4f}; {json.dumps(done)[:160]}"
                  + (f"; memory {row['memory']}" if "memory" in row else ""), flush=True)
        return figures
    finally:
        process.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", nargs="*", choices=sorted(ATTACKS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--attack", choices=sorted(ATTACKS), help=argparse.SUPPRESS)  # (one attack, in its process)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--item", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        return run_attack(args)
    figures = asyncio.run(measure(args))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
