"""Group commit: requests that arrive while a batch is under way go together in the next, so that
one commit (a transaction, an actor call) serves many. With no `gather_s` there is no timer: a lone
request goes at once, and a batch grows only while the one before it is under way.

Written once, for every place that batches requests: the carts' transactions (inventory/carts.py), the
sales actor's transactions (actors/sales.py), a web replica's calls to the sales actors (RaySales),
and the calls of the replication actor and its relays to each cache or relay (actors/deliveries.py).
(The tab tracker's presence reports are not a queue: each tab's newest state replaces its last,
and a lost report is replaced by the whole state, serve/presence.py.) The rules it keeps:
- each request has its own answer (a future); a caller that goes away leaves its batch alone;
- `commit(batch)` returns each request's outcome in order; an Exception among them fails that
  request alone, and a commit that raises fails every request of its batch;
- at most `in_flight` batches are under way at once, of at most `max_batch` requests each;
- at most `bound` requests wait (past it, `refuse()` is raised at once: a bounded queue);
- when `before` fails, every request waiting fails with its error;
- cancelled or closed (the process is stopping), every request still waiting is answered with
  `cut_short()`: nobody waits for ever.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Generic, Iterable, Sequence, TypeVar

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Outcome = TypeVar("Outcome")


class GroupCommit(Generic[Request, Outcome]):
    def __init__(self, commit: Callable[[list[Request]], Awaitable[Sequence[Outcome | Exception] | None]], *,
                 cut_short: Callable[[], Exception], max_batch: int | None = None, in_flight: int = 1,
                 gather_s: float = 0.0, bound: int | None = None, refuse: Callable[[], Exception] | None = None,
                 before: Callable[[], Awaitable[None]] | None = None,
                 on_cut_short: Callable[[list[Request]], None] | None = None):
        self._commit = commit
        self._cut_short = cut_short
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._gather_s = gather_s
        self._bound = bound
        self._refuse = refuse
        self._before = before  # runs before each batch (and once when started with nothing waiting)
        self._on_cut_short = on_cut_short  # told of the requests cut short (to let go what they hold)
        self._waiting: list[tuple[Request, asyncio.Future | None]] = []
        self._runners: set[asyncio.Task] = set()
        self._closed = False

    @property
    def waiting(self) -> int:
        """Requests not yet in a batch."""
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        return bool(self._runners)

    def submit(self, request: Request) -> asyncio.Future:
        """Queue a request; its future gets the outcome (or the exception). Raises `refuse()` when
        the queue is full."""
        if self._bound is not None and len(self._waiting) >= self._bound:
            raise (self._refuse or self._cut_short)()
        answer = asyncio.get_running_loop().create_future()
        self._queue(request, answer)
        return answer

    async def ask(self, request: Request) -> Outcome:
        """Submit and wait for the outcome; a caller cancelled meanwhile leaves the batch alone."""
        return await asyncio.shield(self.submit(request))

    def send(self, requests: Iterable[Request]) -> None:
        """Queue requests whose outcomes nobody waits for (a failure is logged by `commit`)."""
        for request in requests:
            self._queue(request, None)

    def kick(self) -> None:
        """Run `before` soon, with or without requests waiting (a reload asked for from outside)."""
        if not self._runners and not self._closed:
            self._start()

    async def idle(self) -> None:
        """Returns once no batch is under way and nothing waits (a `before` due included)."""
        while self._runners:
            await asyncio.gather(*(asyncio.shield(runner) for runner in list(self._runners)),
                                 return_exceptions=True)

    async def close(self) -> None:
        """Stop: batches under way are cancelled, and every request still waiting is cut short."""
        self._closed = True
        runners = list(self._runners)
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        self._cut(self._waiting)
        self._waiting = []

    # --- inside ---

    def _queue(self, request: Request, answer: asyncio.Future | None) -> None:
        if self._closed:
            if answer is not None:
                answer.set_exception(self._cut_short())
            return
        self._waiting.append((request, answer))
        if len(self._runners) < self._in_flight:
            self._start()

    def _start(self) -> None:
        runner = asyncio.get_running_loop().create_task(self._run())
        self._runners.add(runner)

    def _take(self) -> list[tuple[Request, asyncio.Future | None]]:
        size = len(self._waiting) if self._max_batch is None else self._max_batch
        batch, self._waiting = self._waiting[:size], self._waiting[size:]
        return batch

    async def _run(self) -> None:
        batch: list[tuple[Request, asyncio.Future | None]] = []
        finished = False
        try:
            if self._gather_s:
                await asyncio.sleep(self._gather_s)  # a moment for more to join
            while True:
                if self._before is not None:
                    try:
                        await self._before()
                    except Exception as error:  # (a reload met the database away) what waits fails with it
                        failed, self._waiting = self._waiting, []
                        self._answer_all(failed, error)
                        break
                if not self._waiting:
                    break
                batch = self._take()
                try:
                    outcomes = await self._commit([request for request, _ in batch])
                except Exception as error:  # every request of the batch failed
                    outcomes = [error] * len(batch)
                self._answer(batch, outcomes)
                batch = []
            finished = True
        finally:
            self._runners.discard(asyncio.current_task())
            if not finished:  # cancelled: the process is stopping
                self._cut(batch)
                if not self._runners:
                    self._cut(self._waiting)
                    self._waiting = []
            elif self._waiting and len(self._runners) < self._in_flight and not self._closed:
                self._start()  # (queued after this runner's last look)

    def _cut(self, batch) -> None:
        if batch and self._on_cut_short is not None:
            try:
                self._on_cut_short([request for request, _ in batch])
            except Exception:
                log.exception("letting go of requests cut short failed")
        self._answer_all(batch, self._cut_short())

    @staticmethod
    def _answer(batch, outcomes) -> None:
        if outcomes is None:
            outcomes = [None] * len(batch)
        for (_request, answer), outcome in zip(batch, outcomes):
            if answer is None or answer.done():
                continue
            if isinstance(outcome, Exception):
                answer.set_exception(outcome)
            else:
                answer.set_result(outcome)

    @staticmethod
    def _answer_all(batch, error: Exception) -> None:
        for _request, answer in batch:
            if answer is not None and not answer.done():
                answer.set_exception(error)


def one_by_one(requests: Sequence[Request], commit_one: Callable[[Request], Outcome], *,
               fails_alone: tuple[type[BaseException], ...] = (Exception,),
               stops_all: tuple[type[BaseException], ...] = ()) -> list[Outcome | Exception]:
    """After a batch refused as a whole: each request in a commit of its own, so that one bad
    request fails alone (its error is its outcome). An error in `stops_all` (the database away)
    is the outcome of that request and of every one after it, untried: each try could wait out a
    timeout. Any other error rises."""
    outcomes: list[Outcome | Exception] = []
    for request in requests:
        try:
            outcomes.append(commit_one(request))
        except stops_all as away:
            return outcomes + [away] * (len(requests) - len(outcomes))
        except fails_alone as error:
            outcomes.append(error)
    return outcomes
