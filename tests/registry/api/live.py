"""The whole app on a real 127.0.0.1 port in a background thread, for clients that block (requests, the CLI)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

from registry.app.daemon import build_app
from registry.settings import Settings

T = TypeVar("T")


class LiveServer:
    """``with LiveServer(settings) as srv: srv.url ...``; ``srv.run(coro)`` runs a coroutine on the app's loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app: web.Application = build_app(settings)
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner = web.AppRunner(self.app, access_log=None)

    async def _start(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        self.url = self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._runner.cleanup())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
