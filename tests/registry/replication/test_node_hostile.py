"""Hostile or broken nodes (issue #12 items 9 and 10): URLs refused at registration, redirects never
followed, node error texts shown to admins only (bounded), and one broken node never stops a health round."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from pinner.ipfs.protocol import NodeInfo
from pinner.testing.nodes import FakeKuboNode
from registry.replication.nodes import NODE_ERROR_MAX
from tests.registry.api import helpers
from tests.registry.replication.conftest import Api, Harness

SECRET = "internal-metadata-secret-4711"


class RecursingNode(FakeKuboNode):
    """A node client that fails outside the typed node errors (as deep JSON once did)."""

    async def info(self) -> NodeInfo:
        raise RecursionError("maximum recursion depth exceeded")


async def test_a_health_round_with_broken_nodes_still_updates_the_others(harness: Harness) -> None:
    good = await harness.add_fake("good")
    bad = RecursingNode("http://127.0.0.1:49001")
    harness.backends.by_url[bad.url] = bad
    await harness.registry.add("recursing", "kubo", bad.url)
    await harness.registry.add("no-client", "kubo", "http://127.0.0.1:49002")  # its client cannot be built
    good.down = True
    assert await harness.service.check_nodes() == {"good": "down", "no-client": "down", "recursing": "down"}
    good.down = False
    assert (await harness.service.check_nodes())["good"] == "up"
    shown = {n.name: n for n in await harness.registry.list()}
    assert shown["good"].state == "up" and shown["good"].version == "fake/0.1"
    assert shown["recursing"].last_error == "node_error: health check failed (RecursionError)"
    assert shown["no-client"].last_error == "node_error: health check failed (KeyError)"


# -- over HTTP -----------------------------------------------------------------------------------


Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve(aiohttp_server: Any) -> Serve:
    async def start(app: web.Application) -> str:
        return str((await aiohttp_server(app)).make_url("/")).rstrip("/")

    return start


async def add(api: Api, body: dict[str, object], tok: str | None = None) -> tuple[int, Any]:
    r = await api.client.post("/v1/nodes", json=body, headers=helpers.bearer(tok or api.admin))
    return r.status, await r.json()


async def node_seen_by(api: Api, tok: str | None, name: str) -> dict[str, Any]:
    r = await api.client.get("/v1/nodes", headers=helpers.bearer(tok) if tok else {})
    assert r.status == 200
    listed = {n["name"]: n for n in (await r.json())["nodes"]}
    r = await api.client.get(f"/v1/nodes/{name}", headers=helpers.bearer(tok) if tok else {})
    assert r.status == 200 and await r.json() == listed[name]
    return listed[name]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("url", "part"),
    [
        ("http://user:secret@127.0.0.1:5001", "userinfo"),
        ("http://127.0.0.1:5001/?arg=x", "query"),
        ("http://127.0.0.1:5001/#x", "fragment"),
    ],
)
async def test_node_urls_with_userinfo_query_or_fragment_are_refused(api: Api, url: str, part: str) -> None:
    status, err = await add(api, {"name": "x", "url": url})
    assert status == 400 and err["error"]["code"] == "bad_request"
    assert part in err["error"]["message"] and err["error"]["details"]["part"] == part
    assert (await api.client.get("/v1/nodes/x")).status == 404


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_redirecting_node_is_down_and_the_target_of_its_redirect_gets_nothing(
    api: Api, serve: Serve
) -> None:
    hits: list[str] = []

    async def victim(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        return web.json_response({"ID": "12D3KooWVictim", "AgentVersion": "kubo/0.30.0"})

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(target + request.path_qs)

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", victim)
    target = await serve(other)
    node = web.Application()
    node.router.add_route("*", "/{tail:.*}", redirect)
    status, out = await add(api, {"name": "r", "url": await serve(node)})
    assert status == 201 and out["state"] == "down" and out["last_error"].startswith("node_redirect: ")
    assert hits == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_node_error_texts_are_for_admins_only_and_bounded(api: Api, serve: Serve) -> None:
    async def leaky(request: web.Request) -> web.StreamResponse:
        return web.json_response({"Message": f"{SECRET} " + "B" * 5000, "Code": 0}, status=500)

    node = web.Application()
    node.router.add_route("*", "/{tail:.*}", leaky)
    status, out = await add(api, {"name": "leaky", "url": await serve(node)})
    assert status == 201 and out["state"] == "down"
    admin_view = await node_seen_by(api, api.admin, "leaky")
    assert SECRET in admin_view["last_error"] and len(admin_view["last_error"]) <= NODE_ERROR_MAX
    for tok in (None, api.alice):
        public = await node_seen_by(api, tok, "leaky")
        assert public["state"] == "down" and public["last_error"] == "node_error"
        assert SECRET not in str(public)
    await add(api, {"name": "gone", "url": "http://127.0.0.1:9"})
    assert (await node_seen_by(api, None, "gone"))["last_error"] == "node_unreachable"


async def test_a_node_going_down_and_up_writes_one_event_each_way(harness: Harness) -> None:
    from registry.events import store

    async def node_events() -> list[tuple[str, dict[str, object]]]:
        async with harness.sessions() as s:
            rows = await store.page(s, types=("node.up", "node.down"), limit=100)
        return [(e.type, e.payload) for e in rows]

    good = await harness.add_fake("good")  # unknown -> up
    good.down = True
    await harness.service.check_nodes()
    await harness.service.check_nodes()  # still down: no second event
    good.down = False
    await harness.service.check_nodes()
    got = await node_events()
    assert [(t, p["node"], p["from"]) for t, p in got] == [
        ("node.up", "good", "unknown"),
        ("node.down", "good", "up"),
        ("node.up", "good", "down"),
    ]
    assert got[1][1]["error"] is not None and got[0][1]["error"] is None  # the error's code, never its words


class SlowRepoNode(FakeKuboNode):
    """Answers its identity at once but times out on repo/stat (a busy js-ipfs walking a large repo)."""

    slow = False

    async def free_space(self) -> int | None:
        if self.slow:
            from pinner.ipfs.errors import NodeTimeoutError

            raise NodeTimeoutError(f"POST /api/v0/repo/stat on {self.url} timed out", node_url=self.url)
        return await super().free_space()


async def test_a_node_too_busy_to_measure_its_free_space_stays_up(harness: Harness) -> None:
    node = SlowRepoNode("http://127.0.0.1:49011", free=5 * 10**9)
    harness.backends.by_url[node.url] = node
    await harness.registry.add("busy", "kubo", node.url)
    assert (await harness.service.check_nodes())["busy"] == "up"
    node.slow = True
    assert (await harness.service.check_nodes())["busy"] == "up"  # not down over a slow measurement
    shown = {n.name: n for n in await harness.registry.list()}
    assert shown["busy"].free_space == 5 * 10**9  # the last measurement stands
    node.down = True
    assert (await harness.service.check_nodes())["busy"] == "down"  # its identity call still decides
