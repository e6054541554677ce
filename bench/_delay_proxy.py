"""A TCP proxy on loopback that holds every byte for a fixed one-way delay: a long link (a
site behind a WAN or a satellite hop) where this kernel has no ``tc netem``.

Order is kept per direction; bandwidth is whatever the host's CPU gives. Runs its own event loop
in a daemon thread until ``close()``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque


class DelayProxy:
    def __init__(self, upstream: tuple[str, int], one_way_s: float) -> None:
        self.upstream = upstream
        self.one_way_s = one_way_s
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                                 return_exceptions=True)
        except asyncio.CancelledError:  # close(): drop the connection
            writer.close()
            up_writer.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        held: deque[tuple[float, bytes]] = deque()
        arrived = asyncio.Event()
        ended = False

        async def deliver() -> None:
            while True:
                while not held:
                    if ended:
                        return
                    arrived.clear()
                    await arrived.wait()
                due, data = held.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                dst.write(data)
                await dst.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await src.read(1 << 16):
                held.append((time.monotonic() + self.one_way_s, data))
                arrived.set()
        finally:
            ended = True
            arrived.set()
            await sender
            dst.close()

    async def _shutdown(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
