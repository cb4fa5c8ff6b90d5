"""Run an aiohttp application in its own thread and event loop, so the rest of the agent stays synchronous."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from aiops.domain.errors import InputError


class AgentServer:
    """Serves ``app`` on ``host:port`` from a background thread.

    ``start`` returns once the socket listens (``port`` then holds the real port, useful with port 0); it does not
    touch Prometheus or Kubernetes, so the probes answer even when those are down. ``stop`` shuts down gracefully.
    """

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0,
                 shutdown_timeout: float = 5.0) -> None:
        self._app = app
        self.host = host
        self._requested_port = port
        self._shutdown_timeout = shutdown_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:43211``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "AgentServer":
        """Start serving; raises ``InputError`` naming the address when it cannot listen there."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve, name="aiops-http", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"HTTP server did not start within {timeout}s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise InputError(f"{self.host}:{self._requested_port}", f"cannot listen: {self._error}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, finish in-flight requests (up to the shutdown timeout) and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # noqa: BLE001 - handed to start(), which raises it in the caller's thread
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _listen(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        addresses = self._runner.addresses
        self.port = addresses[0][1] if addresses else self._requested_port
