"""A stand-in for the load balancer in front of a cluster's nodes, for tests on one machine.

Each new connection goes to the first backend (a node's Serve proxy port) that accepts it, and
bytes are piped both ways; when a backend goes away its connections close, and the clients'
reconnects land on the next backend, as behind a real balancer with health checks."""

from __future__ import annotations

import asyncio
import threading


class Balancer:
    def __init__(self, backends: list[int]):
        self.backends = list(backends)  # ports on 127.0.0.1, in order of preference
        self.chosen: list[int] = []  # the backend of every connection, in order
        self.accepting = threading.Event()
        self.accepting.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._connect, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        if self.accepting.is_set():  # cleared: a failover in progress, every client must wait
            for port in list(self.backends):
                try:
                    upstream = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    continue
                self.chosen.append(port)
                break
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))

    async def _shut(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    def close(self) -> None:
        """Stops listening and closes every piped connection, on the balancer's own loop."""
        self._run(self._shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        sink.close()
