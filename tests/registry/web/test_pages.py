"""The web pages on SQLite and Postgres: what each shows, read through the same services as the JSON API."""

from __future__ import annotations

from datetime import UTC, datetime

from registry.api.keys import SESSIONS
from registry.db.models import ValidationReport
from tests.registry.api import helpers
from tests.registry.web.conftest import SHARD, Site, text_of


async def test_models_page_lists_searches_and_filters_by_namespace(site: Site) -> None:
    bob = await helpers.token(site.client.app, "bob", ["beta"])
    await site.publish("acme/tiny")
    await site.publish("acme/small")
    await helpers.upload_and_publish(site.client, bob, "beta/other", [SHARD])
    for path in ("/", "/ui/models"):
        r = await site.client.get(path)
        assert r.status == 200 and r.content_type == "text/html"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        html = await r.text()
        for name in ("acme/tiny", "acme/small", "beta/other"):
            ns, model = name.split("/")
            assert f'href="/ui/models/{ns}/{model}"' in html
        assert '<label for="q">' in html and '<label for="namespace">' in html
    status, html = await site.page("/ui/models?namespace=beta")
    assert (
        status == 200 and "/ui/models/beta/other" in listed(html) and "/ui/models/acme/" not in listed(html)
    )
    status, html = await site.page("/ui/models?q=SMA")  # names are lowercase: the search is too
    assert status == 200 and "/ui/models/acme/small" in listed(html)
    assert "/ui/models/acme/tiny" not in listed(html)
    status, html = await site.page("/ui/models?q=zzz")
    assert status == 200 and "No model matches." in html
    status, html = await site.page("/ui/models?namespace=Not%20A%20Name")
    assert status == 400 and "namespace &#39;not a name&#39; is not allowed" in html


def listed(html: str) -> str:
    """The models list of the page (the events panel below it links to models too)."""
    return html.split('<section class="events"')[0]


async def test_the_events_panel_shows_the_newest_events_and_where_the_live_stream_starts(site: Site) -> None:
    cid = (await site.publish())["cid"]
    events = await (await site.client.get("/v1/events")).json()
    newest = events["items"][-1]
    status, html = await site.page("/")
    panel = html.split('<section class="events"')[1]
    assert status == 200 and f'data-events-after="{newest["id"]}"' in panel
    assert "pack.available" in panel and f'href="/ui/packs/{cid}?model=acme/tiny"' in panel
    status, html = await site.page(f"/ui/packs/{cid}")
    assert f'data-events-after="{newest["id"]}"' in html


async def test_models_page_pages_with_a_cursor(site: Site, monkeypatch) -> None:
    from registry.web import pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    for name in ("a1", "a2", "a3"):
        await site.publish(f"acme/{name}")
    status, html = await site.page("/ui/models")
    assert "/ui/models/acme/a2" in listed(html) and "/ui/models/acme/a3" not in listed(html)
    nxt = html.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    status, html = await site.page(nxt)
    assert status == 200 and "/ui/models/acme/a3" in listed(html) and "/ui/models/acme/a1" not in listed(html)
    status, html = await site.page("/ui/models?cursor=notours")
    assert status == 400 and "cursor" in html


async def test_model_page_shows_versions_pointers_history_and_pull_lines(site: Site) -> None:
    first = await site.publish(reason="first cut")
    second = await site.publish(manifest_extra={"model_version": "2.0.0"}, tag="stable")
    status, html = await site.page("/ui/models/acme/tiny")
    assert status == 200
    text = text_of(html)
    assert "1.0.0" in text and "2.0.0" in text
    for cid in (first["cid"], second["cid"]):
        assert f'href="/ui/packs/{cid}?model=acme/tiny"' in html
        assert f'data-copy="{cid}"' in html  # a copy button for every CID
    assert 'data-copy="modelpack pull acme/tiny@latest tiny"' in html
    assert 'data-copy="modelpack pull acme/tiny@stable tiny"' in html
    assert "first cut" in text  # the pointer history's reasons
    assert "@stable" in text and "@latest" in text
    assert "No IPNS record yet" in text  # no @curated yet: no channel


async def test_pack_page_shows_manifest_shards_signatures_history_and_replicas(site: Site) -> None:
    out = await site.publish(manifest_extra={"license": "apache-2.0"})
    cid = out["cid"]
    status, html = await site.page(f"/ui/packs/{cid}")
    assert status == 200
    text = text_of(html)
    assert 'id="pack-state"' in html and f'data-pack="{cid}"' in html
    assert SHARD[0] in text and helpers.cid_of(SHARD[1]) in text
    assert f'data-copy="{helpers.cid_of(SHARD[1])}"' in html
    assert "apache-2.0" in text and "Not signed." in text and "Not validated yet." in text
    assert "received" in text and "available" in text  # the state history
    assert "embedded blockstore is the one replica" in text
    assert 'data-copy="modelpack pull acme/tiny@latest tiny"' in html
    # the same page under its model, and the JSON document it was read from agrees
    status, again = await site.page(f"/ui/packs/{cid}?model=acme/tiny")
    assert status == 200 and again.count(cid) == html.count(cid)
    detail = await (await site.client.get(f"/v1/packs/{cid}")).json()
    assert detail["state"] in text


async def test_pack_page_shows_the_validation_report_with_behavioural_results(site: Site) -> None:
    cid = (await site.publish())["cid"]
    report = {
        "verdict": "behavior_failed",
        "smoke": {"passed": True, "checks": [{"name": "finite_logits", "passed": True, "reason": None}]},
        "behaviour": {
            "passed": False,
            "budget_exhausted": False,
            "seconds": 0.5,
            "prompts": [
                {"prompt": "capital", "passed": True, "expected": "contains 'Paris'", "produced": "'Paris.'"},
                {"prompt": "sum", "passed": False, "expected": "contains '4'", "produced": "'five'"},
            ],
            "perplexity": {"file": "ref.txt", "tokens": 64, "value": 3.25, "max": 10.0, "passed": True},
        },
    }
    async with site.client.app[SESSIONS]() as s, s.begin():
        s.add(
            ValidationReport(
                pack_cid=cid,
                verdict="behavior_failed",
                reason="prompt sum: expected contains '4', the model produced 'five'",
                report=report,
                finished_at=datetime.now(UTC),
            )
        )
    status, html = await site.page(f"/ui/packs/{cid}")
    text = text_of(html)
    assert status == 200 and "behavior_failed" in text
    assert "Smoke checks" in text and "finite_logits" in text
    assert "Behavioural checks" in text and "capital" in text and "five" in text and "Paris" in text
    assert "ref.txt" in text and "3.25" in text
    assert "The full report (JSON)" in text


async def test_nodes_page_and_a_node_page(site: Site) -> None:
    await site.publish()
    status, html = await site.page("/ui/nodes")
    assert status == 200 and "embedded blockstore is the one replica" in text_of(html)
    status, html = await site.page("/ui/nodes/nosuchnode")
    assert status == 404 and "nosuchnode" in html and "<h1>Not found</h1>" in html


async def test_unknown_pages_are_html_errors_not_json(site: Site) -> None:
    missing = helpers.cid_of(b"never published")
    status, html = await site.page(f"/ui/packs/{missing}")
    assert status == 404 and "<h1>Not found</h1>" in html and missing in html
    status, html = await site.page("/ui/packs/not-a-cid")
    assert status == 400 and "not-a-cid" in html and "<!doctype html>" in html
    status, html = await site.page("/ui/models/acme/nothing")
    assert status == 404 and "acme/nothing" in html
    status, html = await site.page("/ui/models/acme/Bad..Name")
    assert status == 400 and "<!doctype html>" in html
    status, html = await site.page("/ui/no/such/page")
    assert status == 404 and "/ui/no/such/page" in html
    r = await site.client.get("/ui/static/web.css")
    assert r.status == 200 and r.content_type == "text/css"
    # the JSON API is untouched
    r = await site.client.get(f"/v1/packs/{missing}")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
