"""The pages in a real browser (Debian's chromium driven by Playwright): a ``modelpack serve`` daemon with the
embedded blockstore, a signed pack published with the CLI, then links followed models -> model -> pack ->
nodes -> node, copy buttons read back from the clipboard, phone-width layout, and the pack page following the
pack available -> validated -> curated without a reload. Screenshots go to the test's ``screenshots/`` folder
(under pytest's ``--basetemp`` when given)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import dbutil
from tests.e2e.stack import Daemon, cli, trust_key, user_envs
from tests.ipfs_testnode.peers import free_ports
from tests.registry.web.hook_receiver import Receiver, verify_standard_webhook

CHROMIUM = Path("/usr/bin/chromium")
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # the skip below says what is missing
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),  # a validation in the sandbox on a loaded machine, twice
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (`make browser` installs it)",
    ),
    pytest.mark.skipif(
        sync_playwright is None,
        reason="needs Playwright for Python (the dev extras: pip install -e '.[dev]')",
    ),
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
CURATED_WITHIN_MS = 300_000  # validation (a sandboxed subprocess) then the curation sweep


@dataclass
class Stack:
    daemon: Daemon
    admin: str
    alice_env: dict[str, str]
    tmp: Path
    shots: Path

    def publish(self, name: str, seed: str) -> str:
        """demo-pack, sign with the namespace's trusted key, publish: the pack is ``available``."""
        pack = self.tmp / name.replace("/", "_")
        r = cli("demo-pack", str(pack), "--name", name, "--seed", seed)
        assert r.code == 0, r.err
        assert cli("sign", str(pack), "--key", str(self.tmp / "alice.key")).code == 0
        r = cli("publish", str(pack), "--name", name, "--json", env=self.alice_env)
        assert r.code == 0, r.err
        return str(json.loads(r.out)["cid"])

    def validate(self, cid: str) -> None:
        r = cli("validate", cid, env=self.alice_env)
        assert r.code == 0, r.out + r.err


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # Validation only when asked: the live test opens the page while the pack is still `available`.
    daemon = Daemon(
        tmp_path / "data",
        dbutil.sqlite_url(tmp_path / "index.sqlite3"),
        tmp_path / "daemon.log",
        extra_env={
            "MODELPACK_VALIDATION__AUTO_VALIDATE": "false",
            "MODELPACK_WEBHOOKS__DISPATCH_INTERVAL_S": "0.5",
        },
    )
    daemon.start()
    try:
        admin = daemon.token("root", "--scope", "admin")
        alice_env, admin_env = user_envs(daemon, admin)
        trust_key(tmp_path, alice_env, admin_env)
        shots = tmp_path / "screenshots"
        shots.mkdir()
        yield Stack(daemon, admin, alice_env, tmp_path, shots)
    finally:
        daemon.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM))  # never a downloaded browser
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page whose script errors and Content-Security-Policy refusals are collected."""

    def __init__(self, page: Page, stack: Stack) -> None:
        self.page, self.stack, self.problems = page, stack, []
        page.on("pageerror", lambda e: self.problems.append(f"script error: {e}"))
        page.on("console", self._console)

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and "Content Security Policy" in msg.text:
            self.problems.append(msg.text)

    def open(self, path: str) -> Page:
        self.page.goto(self.stack.daemon.url + path)
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.stack.shots / f"{name}.png"), full_page=True)

    def fits(self) -> bool:
        """No horizontal scrolling of the page itself (wide tables scroll inside their own box)."""
        return bool(self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def _copied(page: Page, button: Any) -> str:
    button.click()
    expect(button).to_have_text("Copied")
    return str(page.evaluate("navigator.clipboard.readText()"))


def test_models_model_pack_and_node_pages_in_a_real_browser(stack: Stack, browser: Browser) -> None:
    d = stack.daemon
    cid = stack.publish("acme/tiny", "1")
    stack.validate(cid)
    d.wait_state(cid, "curated", timeout=CURATED_WITHIN_MS / 1000)

    ctx = browser.new_context(viewport=DESKTOP)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=d.url)
    w = Watched(ctx.new_page(), stack)
    page = w.open("/")
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    w.shot("01-models-desktop")

    page.locator("ul.models").get_by_role("link", name="acme/tiny").click()
    expect(page).to_have_url(f"{d.url}/ui/models/acme/tiny")
    expect(page.get_by_role("heading", name="acme/tiny", level=1)).to_be_visible()
    pull = page.locator('button[data-copy="modelpack pull acme/tiny@curated tiny"]')
    assert _copied(page, pull) == "modelpack pull acme/tiny@curated tiny"
    expect(page.locator("#channels-title + dl")).to_contain_text("@curated")  # the IPNS channel
    w.shot("02-model-desktop")

    page.locator(f'#versions-title ~ .scroll a[href="/ui/packs/{cid}?model=acme/tiny"]').click()
    expect(page.locator("#pack-state")).to_have_text("curated")
    expect(page.locator("#validation-title ~ dl")).to_contain_text("pass")
    expect(page.get_by_role("heading", name="Smoke checks")).to_be_visible()
    expect(page.locator("#signatures-title ~ .scroll tbody tr")).to_have_count(1)
    expect(page.locator("#history-rows")).to_contain_text("curated")
    assert _copied(page, page.locator(".facts .cid button.copy").first) == cid
    w.shot("03-pack-desktop")

    # A node that is down, registered only now: with a node configured the pack falls below
    # replication_min and leaves @curated (the pages above show it curated).
    status, body = d.post(
        "/v1/nodes", {"name": "gone", "url": f"http://127.0.0.1:{free_ports(1)[0]}"}, stack.admin
    )
    assert status == 201 and body["state"] == "down", body

    page.get_by_role("link", name="All nodes").click()
    expect(page.get_by_role("heading", name="Nodes", level=1)).to_be_visible()
    w.shot("04-nodes-desktop")
    page.get_by_role("link", name="gone", exact=True).click()
    expect(page.get_by_role("heading", name="Node gone")).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("down")
    w.shot("05-node-desktop")
    assert w.problems == []

    phone = Watched(browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True).new_page(), stack)
    for name, path in [
        ("06-models-phone", "/"),
        ("07-model-phone", "/ui/models/acme/tiny"),
        ("08-pack-phone", f"/ui/packs/{cid}?model=acme/tiny"),
        ("09-nodes-phone", "/ui/nodes"),
        ("10-node-phone", "/ui/nodes/gone"),
    ]:
        phone.open(path)
        expect(
            phone.page.get_by_role("navigation", name="Main").get_by_role("link", name="Nodes")
        ).to_be_visible()
        assert phone.fits(), f"{path} scrolls sideways at {PHONE['width']} px"
        phone.shot(name)
    assert phone.problems == []


def watch_available_validated_curated(stack: Stack, browser: Browser, cid: str) -> None:
    """The pack page, opened while the pack is ``available``, follows it to ``validated`` then ``curated``
    through ``GET /v1/events/stream`` without a reload; the models page's events panel gets the rows too."""
    ctx = browser.new_context(viewport=DESKTOP)
    panel = Watched(ctx.new_page(), stack)
    panel.open("/")
    w = Watched(ctx.new_page(), stack)
    page = w.open(f"/ui/packs/{cid}?model=acme/live")
    badge = page.locator("#pack-state")
    expect(badge).to_have_text("available")
    page.evaluate(
        """() => {
            window.sameDocument = true;
            window.seen = [];
            const badge = document.getElementById("pack-state");
            new MutationObserver(() => window.seen.push(badge.textContent))
                .observe(badge, {childList: true, characterData: true, subtree: true});
        }"""
    )
    w.shot("11-pack-live-available")
    stack.validate(cid)
    expect(badge).to_have_text("curated", timeout=CURATED_WITHIN_MS)
    seen = page.evaluate("window.seen")
    assert [s for s in seen if s in ("validated", "curated")] == ["validated", "curated"], seen
    assert page.evaluate("window.sameDocument") is True  # the same document: never reloaded
    rows = page.locator("#history-rows tr")
    expect(rows.nth(0)).to_contain_text("curated")
    expect(page.locator("#history-rows")).to_contain_text("validated")
    w.shot("12-pack-live-curated")
    expect(panel.page.locator("#event-list")).to_contain_text("pack.curated")
    assert panel.page.locator("#event-list").get_by_text("acme/live").count() >= 2
    panel.shot("13-models-live-events")
    assert w.problems == [] and panel.problems == []


def test_the_pack_page_goes_available_validated_curated_without_reloading(
    stack: Stack, browser: Browser
) -> None:
    """...and a webhook receiver (a small server in the test) gets the same changes as signed deliveries,
    verified here with the Standard Webhooks algorithm written out (HMAC-SHA256 over id.timestamp.body)."""
    d = stack.daemon
    with Receiver() as hook:
        admin_env = {k: v for k, v in stack.alice_env.items()} | {"MODELPACK_TOKEN": stack.admin}
        r = cli(
            "webhook",
            "add",
            "acme",
            hook.url,
            "--event",
            "pack.validated,pack.curated",
            "--json",
            env=admin_env,
        )
        assert r.code == 0, r.out + r.err
        secret = json.loads(r.out)["secret"]
        cid = stack.publish("acme/live", "4")
        assert d.state(cid)["state"] == "available"
        watch_available_validated_curated(stack, browser, cid)
        got = hook.wait_for(2, timeout=120)
    for delivery in got:
        assert verify_standard_webhook(secret, delivery), delivery.headers
    # One delivery job per event: two events dispatched together are delivered concurrently, in either order
    # (Standard Webhooks promises none). The event ids, in the outbox's commit order, order them.
    bodies = sorted((json.loads(r.body) for r in got), key=lambda b: b["data"]["id"])
    assert [b["type"] for b in bodies] == ["pack.validated", "pack.curated"]
    assert all(b["data"]["pack"] == cid and b["data"]["model"] == "acme/live" for b in bodies)
