"""docs/sdk.md's tracking guide is true: its code blocks run as written against the real SDK, their
lines go to a live hub, and the analytics API reads them as the guide says (who, which session,
properties, the experiment's variant on the exposure event, a campaign breakdown)."""

from __future__ import annotations

import contextvars
import re
from pathlib import Path
from typing import Any

from tests.hubproc import LiveHub
from tests.sdk.conftest import LogFile, read_lines

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def _guide_blocks() -> list[str]:
    text = GUIDE.read_text("utf-8")
    section = text.split("### Tracking guide", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _run(code: str) -> None:
    """As a module would run it, in a context of its own (its bind_user stays there)."""
    contextvars.copy_context().run(exec, compile(code, str(GUIDE), "exec"), {"__name__": "guide"})


def _post(hub: LiveHub, path: str, body: dict[str, Any]) -> Any:
    with hub.client(hub.read_token) as c:
        r = c.post(f"/api/v1/analytics/{path}", json={**body, "from": "-1h"})
    assert r.status_code == 200, r.text
    return r.json()


def test_the_guide_runs_and_the_hub_reads_it(sdk_log: LogFile, sqlite_hub: LiveHub) -> None:
    blocks = _guide_blocks()
    assert len(blocks) == 2, "the guide's examples changed: update this test"
    for code in blocks:
        _run(code)
    lines = [x for x in read_lines(sdk_log.path) if x.get("kind") == "event"]
    r = sqlite_hub.ingest(lines)
    assert r.status_code == 200 and r.json()["accepted"] == len(lines), r.text

    # Who, which session, properties: the first block.
    viewed = next(x for x in lines if x["name"] == "pricing_viewed")
    assert (viewed["user_id"], viewed["session_id"]) == ("u-1001", "s-1001-a")
    assert next(x for x in lines if x["name"] == "invoice_paid")["user_id"] == "u-2002"
    campaign = _post(
        sqlite_hub,
        "funnel",
        {"steps": ["pricing_viewed", "signup_completed"], "breakdown": "utm_campaign", "unit": "session"},
    )
    (group,) = campaign["breakdown"]
    assert group["value"] == "spring_sale" and [s["sessions"] for s in group["steps"]] == [1, 1]

    # The experiment: the variant on the exposure (step 1), the goal the last step.
    exposed: dict[str, set[str]] = {}
    for x in lines:
        if x["name"] == "checkout_viewed":
            exposed.setdefault(x["attrs"]["variant"], set()).add(x["user_id"])
    goal = {x["user_id"] for x in lines if x["name"] == "order_placed"}
    out = _post(
        sqlite_hub,
        "experiment",
        {"steps": [{"event": "checkout_viewed", "q": "experiment:new_checkout"}, "order_placed"], "variant": "variant"},
    )
    assert [(v["value"], v["users"], v["converted"]) for v in out["variants"]] == [
        (k, len(exposed[k]), len(exposed[k] & goal)) for k in ("A", "B")
    ]
    assert out["users_without_variant"] == 0 and out["comparisons"][0]["variant"] == "B"
    assert out["comparisons"][0]["difference"] > 0  # B was planted to convert more
