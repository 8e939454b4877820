"""Every value a page shows is escaped: HTML in manifest fields, reasons, report text and the search box."""

from __future__ import annotations

from datetime import UTC, datetime

from registry.api.keys import SESSIONS
from registry.db.models import ValidationReport
from tests.registry.api import helpers
from tests.registry.web.conftest import HOSTILE, HOSTILE_IMG, SHARD, Site

ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
ESCAPED_IMG = "&lt;img src=x onerror=alert(1)&gt;"


def assert_inert(html: str) -> None:
    assert "<script>" not in html and "<img" not in html, "a hostile value reached the page unescaped"
    assert html.count("<script") == 1  # only the page's own script element (src=, no inline code)


async def test_a_hostile_pack_is_shown_escaped_everywhere(site: Site) -> None:
    out = await helpers.upload_and_publish(
        site.client,
        site.alice,
        "acme/tiny",
        [SHARD],
        manifest_extra={
            "model_version": HOSTILE,
            "license": HOSTILE_IMG,
            "notes": {"html": "</pre>" + HOSTILE},
        },
        tag="rc",
        reason=HOSTILE_IMG,
    )
    cid = out["cid"]
    async with site.client.app[SESSIONS]() as s, s.begin():
        s.add(
            ValidationReport(
                pack_cid=cid,
                verdict="behavior_failed",
                reason=HOSTILE,
                report={
                    "smoke": {"checks": [{"name": HOSTILE, "passed": False, "reason": HOSTILE_IMG}]},
                    "behaviour": {
                        "passed": False,
                        "prompts": [
                            {"prompt": HOSTILE, "passed": False, "expected": "x", "produced": HOSTILE}
                        ],
                    },
                },
                finished_at=datetime.now(UTC),
            )
        )
    pages = {
        "model": "/ui/models/acme/tiny",
        "pack": f"/ui/packs/{cid}",
        "search": "/ui/models?q=" + HOSTILE,
    }
    for what, path in pages.items():
        status, html = await site.page(path)
        assert status == 200, (what, html)
        assert_inert(html)
        assert ESCAPED in html or what == "search", what
    _, pack = await site.page(pages["pack"])
    assert ESCAPED_IMG in pack and "&lt;/pre&gt;" in pack
    _, model = await site.page(pages["model"])
    assert ESCAPED_IMG in model  # the pointer's reason in its history
    _, search = await site.page(pages["search"])
    assert 'value="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"' in search
