"""The daemon's route table: the hot reads are tried first, and hoisting them shadows no other route."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_urldispatcher import DynamicResource, PlainResource

from registry.app.daemon import HOT_ROUTES, build_app, route_defs
from registry.settings import Settings

SAMPLE = "s4mple"  # matches every variable's pattern in the table ([^{}/]+, .+ and .*)


@pytest.fixture(scope="module")
def app() -> web.Application:
    return build_app(Settings())


def _routes(app: web.Application) -> list[web.ResourceRoute]:
    return [
        r
        for r in app.router.routes()
        if isinstance(r, web.ResourceRoute) and isinstance(r.resource, PlainResource | DynamicResource)
    ]


def _sample_path(resource: web.AbstractResource) -> str:
    if isinstance(resource, PlainResource):
        return resource.canonical
    assert isinstance(resource, DynamicResource)
    names = resource.get_info()["pattern"].groupindex
    return str(resource.url_for(**dict.fromkeys(names, SAMPLE)))


async def _shadowed(app: web.Application) -> list[str]:
    """The routes that a path of their own template does not reach."""
    out = []
    for route in _routes(app):
        path = _sample_path(route.resource)  # type: ignore[arg-type]
        match = await app.router.resolve(make_mocked_request(route.method, path, app=app))
        if match.route is not route:
            out.append(f"{route.method} {path} reached {match.route}")
    return out


async def test_every_route_is_reached_by_a_path_of_its_own_template(app: web.Application) -> None:
    """With the hot routes added first, a path of each route's own template still resolves to that route
    (were a hoisted route to match another's paths, it would take them here)."""
    assert len(_routes(app)) > 40
    assert await _shadowed(app) == []


async def test_the_check_sees_a_route_shadowed_by_one_added_before_it() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/v1/models/{namespace}/{model}/{what}", handler)  # added first, as a hoisted route
    app.router.add_get("/v1/models/{namespace}/{model}/pointers", handler)
    assert {s.split(" reached")[0] for s in await _shadowed(app)} == {
        "GET /v1/models/s4mple/s4mple/pointers",
        "HEAD /v1/models/s4mple/s4mple/pointers",
    }


def test_the_hot_routes_exist_and_are_added_first(app: web.Application) -> None:
    added = [
        (r.method, r.resource.canonical)
        for r in _routes(app)
        if r.resource is not None and r.method != "HEAD"
    ]
    assert added[: len(HOT_ROUTES)] == list(HOT_ROUTES)  # a renamed path would fall out of the list
    hot = [d for d in route_defs() if isinstance(d, web.RouteDef) and (d.method, d.path) in HOT_ROUTES]
    assert len(hot) == len(HOT_ROUTES)
