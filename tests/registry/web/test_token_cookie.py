"""``server.read_requires_token``: the pages ask for a token once, keep it in an HttpOnly, SameSite=Strict cookie
that only the pages accept, refuse a forged or cross-site form, and say clearly why a token was refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from registry.api.keys import REGISTRY
from registry.settings import Settings
from registry.web.session import COOKIE, CSRF_COOKIE
from tests.registry.api import helpers
from tests.registry.web.conftest import Site, hidden, site_settings, started


@pytest.fixture
async def private(settings: Settings) -> AsyncIterator[Site]:
    async for s in started(site_settings(settings, read_requires_token=True)):
        await s.publish()
        yield s


async def _form(site: Site, path: str = "/ui/login?next=/ui/nodes") -> tuple[str, str]:
    """The form's CSRF value and the CSRF cookie the form set (the test client keeps no cookies itself)."""
    r = await site.client.get(path)
    assert r.status == 200
    cookie = r.cookies[CSRF_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/ui/login"
    return hidden(await r.text(), "csrf"), cookie.value


async def _post(site: Site, token: str, *, csrf: str, cookie: str, headers: dict[str, str] | None = None):
    return await site.client.post(
        "/ui/login",
        data={"csrf": csrf, "token": token, "next": "/ui/nodes"},
        headers={"Cookie": f"{CSRF_COOKIE}={cookie}", **(headers or {})},
        allow_redirects=False,
    )


async def test_the_token_is_asked_once_and_kept_in_a_strict_httponly_cookie(private: Site) -> None:
    site = private
    r = await site.client.get("/ui/models/acme/tiny", allow_redirects=False)
    assert r.status == 303
    where = urlsplit(r.headers["Location"])
    assert where.path == "/ui/login" and parse_qs(where.query)["next"] == ["/ui/models/acme/tiny"]
    csrf, cookie = await _form(site)
    r = await _post(site, site.alice, csrf=csrf, cookie=cookie)
    assert r.status == 303 and r.headers["Location"] == "/ui/nodes"
    kept = r.cookies[COOKIE]
    assert kept.value == site.alice
    assert kept["httponly"] and kept["samesite"] == "Strict" and kept["path"] == "/"
    jar = {"Cookie": f"{COOKIE}={kept.value}"}
    for path in ("/", "/ui/models/acme/tiny", "/ui/nodes"):
        r = await site.client.get(path, headers=jar, allow_redirects=False)
        assert r.status == 200, path
    assert "Sign out" in await (await site.client.get("/", headers=jar)).text()
    # the cookie is the pages' alone: the JSON API still wants a bearer token
    r = await site.client.get("/v1/models", headers=jar)
    assert r.status == 401
    # sign out: the cookie is cleared, and the pages ask again
    r = await site.client.post("/ui/logout", headers=jar, allow_redirects=False)
    assert r.status == 303 and r.cookies[COOKIE].value == ""


async def test_wrong_tokens_get_a_clear_message(private: Site) -> None:
    site = private
    csrf, cookie = await _form(site)
    r = await _post(site, "mpk_not-a-real-token", csrf=csrf, cookie=cookie)
    assert r.status == 401 and COOKIE not in r.cookies
    assert "That token was not accepted: the API token is not known to this registry" in await r.text()
    r = await _post(site, "hello", csrf=csrf, cookie=cookie)
    assert r.status == 401 and "not a modelpack token" in await r.text()
    r = await _post(site, "  ", csrf=csrf, cookie=cookie)
    assert r.status == 400 and "Enter an API token." in await r.text()
    pin_only = await helpers.token(site.client.app, "pinner", ["acme"], scopes=("pin",))
    r = await _post(site, pin_only, csrf=csrf, cookie=cookie)
    assert r.status == 403 and "needs the read, publish or admin scope" in await r.text()


async def test_a_revoked_token_in_the_cookie_sends_the_browser_back_to_the_form(private: Site) -> None:
    site = private
    issued = await site.client.app[REGISTRY].auth.create_token("carol", namespaces=None, scopes=("read",))
    jar = {"Cookie": f"{COOKIE}={issued.token}"}
    assert (await site.client.get("/", headers=jar)).status == 200
    r = await site.client.delete(f"/v1/tokens/{issued.id}", headers=helpers.bearer(site.admin))
    assert r.status in (200, 204), await r.text()
    r = await site.client.get("/ui/nodes", headers=jar, allow_redirects=False)
    assert r.status == 303 and "why=rejected" in r.headers["Location"]
    assert r.cookies[COOKIE].value == ""  # the refused token is dropped
    r = await site.client.get(r.headers["Location"])
    assert "not accepted any more" in await r.text()


async def test_the_form_refuses_a_forged_or_cross_site_post(private: Site) -> None:
    site = private
    csrf, cookie = await _form(site)
    forged = [
        {"csrf": "guessed", "cookie": cookie, "headers": None},  # the field must match the cookie
        {"csrf": csrf, "cookie": "", "headers": None},  # no cookie: the form did not come from us
        {"csrf": csrf, "cookie": cookie, "headers": {"Origin": "https://evil.example"}},
        {"csrf": csrf, "cookie": cookie, "headers": {"Origin": "null"}},
        {"csrf": csrf, "cookie": cookie, "headers": {"Sec-Fetch-Site": "cross-site"}},
    ]
    for case in forged:
        r = await _post(site, site.alice, csrf=case["csrf"], cookie=case["cookie"], headers=case["headers"])
        assert r.status == 403, case
        assert COOKIE not in r.cookies and "not sent from this site" in await r.text()
    r = await site.client.post("/ui/logout", headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False)
    assert r.status == 403


@pytest.mark.parametrize(
    ("next_path", "lands"),
    [
        ("/ui/nodes", "/ui/nodes"),
        ("//evil.example/x", "/"),
        ("https://evil.example", "/"),
        ("/ui/login", "/"),
    ],
)
async def test_the_form_only_sends_the_browser_back_to_this_site(
    private: Site, next_path: str, lands: str
) -> None:
    site = private
    csrf, cookie = await _form(site)
    r = await site.client.post(
        "/ui/login",
        data={"csrf": csrf, "token": site.alice, "next": next_path},
        headers={"Cookie": f"{CSRF_COOKIE}={cookie}"},
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"] == lands


async def test_public_registries_need_no_token_for_the_pages(site: Site) -> None:
    await site.publish()
    assert (await site.client.get("/", allow_redirects=False)).status == 200
    r = await site.client.get("/ui/login")
    assert r.status == 200 and "need no token" in await r.text()
