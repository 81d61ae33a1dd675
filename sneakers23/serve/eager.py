"""Start a coroutine at once, on the caller's stack, and make a task of it only if it has to wait.

A push to 10,000 sockets is 10,000 sends, and a send almost never waits: the frame goes into the
socket's buffer and the call returns. Giving each send a task of its own (or waking a writer task
per socket) costs more than the send itself, in event-loop scheduling. Python 3.12's eager tasks
are the general form of this; the store runs on 3.11, and needs it for one kind of coroutine only:
a send, which waits (if at all) on asyncio futures and bare yields and does not use the current
task (while it runs eagerly, that is the caller's). The rule is the one a task follows: step the
coroutine; when it yields a future, resume it once that future is done; when it yields nothing,
resume it on the next turn of the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

DONE = object()  # what `start` returns for a coroutine that finished without waiting


def start(coroutine: Coroutine) -> Any:
    """Run the coroutine until it finishes (returns DONE) or first waits (returns what it waits
    on, for `finish`). Its exceptions are raised here."""
    try:
        return coroutine.send(None)
    except StopIteration:
        return DONE


async def finish(coroutine: Coroutine, waiting: Any) -> None:
    """Drive a coroutine that `start` left waiting to its end, as a task would; its exceptions
    are raised here. Cancelling this cancels what it waits on and raises CancelledError inside
    it, as cancelling a task does."""
    try:
        while True:
            if waiting is None:  # a bare yield (asyncio.sleep(0)): the loop turns once
                await asyncio.sleep(0)
                waiting = coroutine.send(None)
            elif asyncio.isfuture(waiting):  # resume once it is done, whatever its outcome
                waiting._asyncio_future_blocking = False
                if not waiting.done():
                    await asyncio.wait([waiting])
                waiting = coroutine.send(None)
            else:
                waiting = coroutine.throw(RuntimeError(f"bad yield from a coroutine: {waiting!r}"))
    except StopIteration:
        return
    except asyncio.CancelledError:
        if asyncio.isfuture(waiting):
            waiting.cancel()
        try:
            coroutine.throw(asyncio.CancelledError())
        except (StopIteration, asyncio.CancelledError):
            pass
        else:  # it meant to wait on: stop it there
            coroutine.close()
        raise
