"""A webhook receiver for the tests: a small aiohttp server on 127.0.0.1 that records every request and answers
as the test scripts it (a status list, a redirect, a hang, a huge body), and lets the test wait for the n-th
request with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

HUGE_BYTES = 100 * 1024 * 1024


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    server: TestServer | None = None
    requests: list[Received] = field(default_factory=list)
    script: list[str | int] = field(default_factory=list)  # per request: a status, "redirect", "hang", "huge"
    huge_sent: int = 0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(request.path, dict(request.headers), body))
        async with self._arrived:
            self._arrived.notify_all()
        what = self.script.pop(0) if self.script else 200
        if what == "hang":
            await self._release.wait()
            return web.Response(status=200)
        if what == "redirect":
            raise web.HTTPFound(self.url("/elsewhere"))
        if what == "huge":
            resp = web.StreamResponse(status=200)
            await resp.prepare(request)
            chunk = b"x" * 65536
            try:
                while self.huge_sent < HUGE_BYTES:
                    await resp.write(chunk)
                    self.huge_sent += len(chunk)
            except (ConnectionResetError, RuntimeError):
                pass
            return resp
        status = int(what)
        return web.Response(status=status, text=f"receiver says {status} " + "y" * 3000)

    async def wait_for(self, n: int, timeout: float = 30.0) -> list[Received]:
        """The first ``n`` requests, once they arrived (TimeoutError after ``timeout``)."""
        async with asyncio.timeout(timeout):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return self.requests[:n]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    rec.server = TestServer(app, host="127.0.0.1")
    await rec.server.start_server()
    try:
        yield rec
    finally:
        rec._release.set()
        await rec.server.close()
