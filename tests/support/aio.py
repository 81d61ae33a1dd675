"""Running a coroutine to its end from a test."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor


def run(coroutine):
    """asyncio.run in a thread of its own: the session's Playwright keeps an event loop running in
    the main thread, where asyncio.run refuses to start."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()
