"""The main flows in a real browser (Debian's chromium through Playwright) against a live hub
with the demo data. Each test saves a full-page screenshot under build/screenshots/."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from obshub.demo import DEMO_STORY, generate
from tests.hubproc import LiveHub
from tests.web.conftest import SKEWED_TRACE, DemoServe, demo_journey, shot, true_switches

pytestmark = pytest.mark.browser

A11Y_CHECK = """() => {
  const problems = [];
  for (const tag of ["header", "nav", "main", "footer"])
    if (!document.querySelector(tag)) problems.push("no <" + tag + "> landmark");
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    const named = el.labels.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!named) problems.push("unlabelled " + el.tagName + " " + (el.name || el.id));
  }
  if (!document.querySelector("h1")) problems.push("no h1");
  for (const img of document.querySelectorAll("img:not([alt])")) problems.push("img without alt");
  for (const svg of document.querySelectorAll("main svg"))
    if (svg.getAttribute("role") === "img" && !(svg.getAttribute("aria-label") || svg.getAttribute("aria-labelledby")))
      problems.push("svg img without a name");
  return problems;
}"""


def accessible(page: Any) -> None:
    assert page.evaluate(A11Y_CHECK) == []


def test_search_click_request_id_opens_trace_on_two_hosts(page: Any) -> None:
    rid = DEMO_STORY["cross_host_request"]
    page.get_by_role("textbox", name="Query").fill(f"user_id:{DEMO_STORY['user_id']}")
    page.get_by_role("textbox", name="Query").press("Enter")
    page.wait_for_url(re.compile(r"/search\?q=user_id"))
    expect(page.locator("ol.events li.ev").first).to_be_visible()
    accessible(page)
    row = page.locator("li.ev", has_text="GET /products/42 200 400ms")
    row.locator("summary").click()
    expect(row.locator("pre.json")).to_contain_text(rid)
    shot(page, "search")
    row.locator("a.chip-request_id").click()
    page.wait_for_url(f"**/trace/{rid}")
    expect(page.get_by_role("heading", name=f"Trace {rid}")).to_be_visible()
    lanes = page.locator("svg.swimlanes text.hostlabel")
    expect(lanes).to_have_text(["web-1", "web-2"])
    rows = page.locator("table.evlist tbody tr")
    expect(rows).to_have_count(4)
    hosts = rows.locator("td:nth-child(4)").all_inner_texts()
    assert [h.split(" · ")[0].strip() for h in hosts] == ["web-1", "web-2", "web-2", "web-1"]
    expect(page.locator("svg.swimlanes a.mk")).to_have_count(4)
    # A marker is a link to its row, which opens.
    page.locator("svg.swimlanes a.mk").nth(1).click()
    expect(rows.nth(1).locator("details")).to_have_attribute("open", "")
    expect(rows.nth(1).locator("pre.json")).to_contain_text("load product 42 from db")
    accessible(page)
    shot(page, "trace")


def test_trace_orders_on_corrected_time_with_raw_toggle(page: Any) -> None:
    page.goto(f"/trace/{SKEWED_TRACE}")
    skew = page.locator(".skew table tbody tr")
    # offset estimate = skew - (send-to-receive delay of the quickest batch): a little under.
    edge = skew.filter(has_text="edge-1").locator("td.skewval").inner_text()
    api = skew.filter(has_text="api-9").locator("td.skewval").inner_text()
    assert re.fullmatch(r"\+\d\.\d{3} s", edge) and 2.5 <= float(edge[1:-2]) <= 3.0, edge
    assert re.fullmatch(r"−\d\.\d{3} s", api) and 2.0 <= float(api[1:-2]) <= 2.5, api
    msgs = page.locator("table.evlist tbody tr td:nth-child(6) summary")
    expect(msgs).to_have_text(
        ["GET /orders/7 received", "load order 7", "order 7 loaded in 500ms", "GET /orders/7 200 1500ms"]
    )
    expect(page.locator(".skew")).to_contain_text("this changes the order")
    shot(page, "trace-skew-corrected")
    page.get_by_role("link", name="Raw time").click()
    page.wait_for_url("**time=raw**")
    expect(msgs).to_have_text(
        ["load order 7", "order 7 loaded in 500ms", "GET /orders/7 received", "GET /orders/7 200 1500ms"]
    )
    shot(page, "trace-skew-raw")


def test_user_page_marks_the_host_switch(page: Any) -> None:
    page.goto(f"/users/{DEMO_STORY['user_id']}")
    expect(page.locator(".switchcount")).to_be_visible()
    failing = page.locator("table.requests tr", has_text=DEMO_STORY["failing_request"])
    expect(failing.locator(".switchbadge")).to_have_text("⇄ switched web-1 → web-2")
    expect(page.locator("tr.inline-error", has_text="KeyError")).to_be_visible()
    expect(page.locator(".hoststrip li.switched.has-error")).to_have_count(1)
    expect(page.get_by_role("note")).to_contain_text("1 failing request right after a host switch: #3 web-1 → web-2")
    accessible(page)
    shot(page, "user")


def test_served_demo_story_only_real_switches_and_the_failing_checkout(
    served_page: Any, served_demo: DemoServe
) -> None:
    """`obshub serve --demo` (make run), u-0007: the host strip and the request table mark only
    the switches that happened (on corrected time: web-2's clock is 1.5 s slow), and the failing
    checkout is flagged right after the one from web-1 (cart saved) to web-2."""
    page = served_page
    journey = demo_journey(served_demo, DEMO_STORY["user_id"])
    switched = true_switches(journey)
    page.goto(f"/users/{DEMO_STORY['user_id']}")
    rows = page.locator("table.requests tbody tr[id^='req-']")
    expect(rows).to_have_count(len(journey))
    expect(page.locator(".switchcount")).to_have_text(
        f"{len(switched)} host switch{'' if len(switched) == 1 else 'es'}"
    )
    strip = page.locator(".hoststrip li")
    expect(strip.locator("a")).to_have_text([host for _, host in journey])
    marked = [i for i in range(len(journey)) if "switched" in (strip.nth(i).get_attribute("class") or "")]
    assert marked == [i for i, (rid, _) in enumerate(journey) if rid in switched]
    badges = rows.locator(".switchbadge")
    expect(badges).to_have_text(["⇄ switched {} → {}".format(*switched[rid]) for rid, _ in journey if rid in switched])
    # The story: the cross-host request enters web-1 (no switch after it), the cart on web-1, then
    # the checkout on web-2 -- switched, failing, its KeyError inline.
    ids = [rid for rid, _ in journey]
    i = ids.index(DEMO_STORY["failing_request"])
    assert ids[i - 2 : i + 1] == [
        DEMO_STORY["cross_host_request"],
        DEMO_STORY["cart_request"],
        DEMO_STORY["failing_request"],
    ]
    expect(rows.nth(i - 1).locator(".switchbadge")).to_have_count(0)
    failing = rows.nth(i)
    expect(failing).to_have_class(re.compile(r"\bis-error\b.*\bswitched\b"))
    expect(failing.locator(".switchbadge")).to_have_text("⇄ switched web-1 → web-2")
    expect(page.locator(f"#req-{i + 1} + tr.inline-error")).to_contain_text("KeyError")
    expect(page.locator(".hoststrip li.switched.has-error")).to_have_count(1)
    expect(page.get_by_role("note")).to_contain_text(
        f"1 failing request right after a host switch: #{i + 1} web-1 → web-2"
    )
    expect(page.locator(".skewnote")).to_contain_text("corrected time")
    expect(page.locator(".skewnote")).to_contain_text("web-2 −1.5")
    accessible(page)
    shot(page, "user-served-demo")


def test_served_demo_errors_page_has_the_keyerror_group(served_page: Any) -> None:
    # serve --demo writes through the ingest pipeline (obshub/ingest/pipeline.py): its errors are grouped
    page = served_page
    story = [e for e in generate(0) if e.get("kind") == "error" and e["error"]["type"] == "KeyError"]
    page.goto("/errors")
    row = page.locator("table.groups tbody tr", has_text="KeyError")
    expect(row).to_have_count(1, timeout=5_000)
    expect(row.locator("td").nth(1)).to_have_text(str(len(story)))
    expect(row.locator("td").nth(2)).to_have_text(str(len({e["user_id"] for e in story})))
    expect(row.locator("td").nth(3)).to_have_text(", ".join(sorted({e["host"] for e in story})))
    shot(page, "errors-served-demo")


def test_syntax_error_is_shown_at_its_column(page: Any) -> None:
    page.get_by_role("textbox", name="Query").fill('level:error "timed out')
    page.get_by_role("button", name="Search").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("unterminated quote")
    expect(alert).to_contain_text("column 13")
    caret_line = alert.locator("pre").inner_text().splitlines()[1]
    assert caret_line.index("^") == 12
    expect(page.get_by_role("textbox", name="Query")).to_have_attribute("aria-invalid", "true")
    shot(page, "search-syntax-error")


def test_live_tail_shows_a_fresh_line_and_pauses(page: Any, demo_hub: LiveHub) -> None:
    tag = uuid.uuid4().hex[:8]
    page.goto(f"/tail?q=service:tail-{tag}")
    status = page.locator("#tail-status")
    expect(status).to_contain_text("Live")
    accessible(page)

    def send(msg: str) -> None:
        r = demo_hub.ingest(
            [
                {
                    "ts": time.time(),
                    "service": f"tail-{tag}",
                    "host": "web-9",
                    "message": msg,
                    "request_id": f"req-tail-{tag}",
                }
            ]
        )
        assert r.status_code == 200

    send(f"first fresh line {tag}")
    expect(page.locator("#tail .line")).to_have_count(1, timeout=10_000)
    expect(page.locator("#tail .line")).to_contain_text(f"first fresh line {tag}")
    # A line for another service never reaches this tail (filtered on the server).
    demo_hub.ingest([{"ts": time.time(), "service": "other", "message": f"not for this tail {tag}"}])
    page.get_by_role("button", name="Pause").click()
    send(f"second line while paused {tag}")
    expect(status).to_contain_text("1 new line(s) waiting", timeout=10_000)
    expect(page.locator("#tail .line")).to_have_count(1)
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#tail .line")).to_have_count(2)
    expect(page.locator("#tail")).not_to_contain_text("not for this tail")
    shot(page, "tail")


def test_analytics_charts(page: Any) -> None:
    page.get_by_role("link", name="Analytics").click()
    page.wait_for_url("**/analytics")
    page.get_by_role("link", name="add_to_cart").click()
    page.get_by_role("link", name="plan").click()
    expect(page.locator("svg.chart rect.bar").first).to_be_attached()
    expect(page.locator("table.values tbody tr")).to_have_count(3)
    page.get_by_label("Count").select_option("1")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", name=re.compile("unique users"))).to_be_visible()
    accessible(page)
    shot(page, "analytics")


def test_keyboard_search_and_expand(page: Any) -> None:
    page.locator("body").press("/")
    expect(page.get_by_role("textbox", name="Query")).to_be_focused()
    page.keyboard.type("level:error host:web-2")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=level%3Aerror**")
    page.get_by_role("textbox", name="Query").press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(page.locator("li.ev summary").nth(1)).to_be_focused()
    page.keyboard.press("k")
    expect(page.locator("li.ev summary").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("li.ev details").first).to_have_attribute("open", "")
    page.keyboard.press("Tab")  # into the opened row: its first pivot chip
    expect(page.locator("li.ev details").first.locator("a.chip").first).to_be_focused()
    shot(page, "search-keyboard")


def test_view_in_context_same_host(page: Any) -> None:
    page.goto(f"/search?q=request_id:{DEMO_STORY['failing_request']}+kind:error")
    row = page.locator("li.ev").first
    row.locator("summary").click()
    row.get_by_role("link", name="same host ±20").click()
    expect(page.locator("li.ev.is-anchor")).to_have_count(1)
    expect(page.locator("li.ev")).to_have_count(41)
    shot(page, "context")


def test_error_group_resolve_changes_state(page: Any) -> None:
    page.get_by_role("link", name="Errors").click()
    page.wait_for_url("**/errors")
    groups = page.locator("table.groups tbody tr")
    expect(groups).to_have_count(2)  # the demo's KeyError (cart lost) and the payment TimeoutError burst
    accessible(page)
    shot(page, "errors")
    page.get_by_role("link", name=re.compile("KeyError")).click()
    page.wait_for_url(re.compile(r"/errors/[^/]+$"))
    expect(page.locator("#group-state")).to_have_text("unresolved")
    expect(page.locator("ol.frames li.in-app").first).to_contain_text("shop.web.session")
    occurrences = page.locator("table", has_text="Request / trace")
    expect(occurrences.locator("a.chip-request_id")).to_have_text(re.compile(DEMO_STORY["failing_request"]))
    accessible(page)
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#group-state")).to_have_text("resolved")
    expect(page.get_by_role("status").filter(has_text="Done")).to_contain_text("resolved")
    shot(page, "error-group-resolved")
    page.get_by_role("link", name="« All errors").click()
    expect(page.locator("table.groups tbody tr")).to_have_count(1)  # only the unresolved burst is left
    page.get_by_role("link", name="resolved", exact=True).click()
    expect(page.locator("table.groups tbody tr")).to_contain_text("KeyError")
    # From the group to the failing request's trace: both hosts' lines of that request.
    page.get_by_role("link", name=re.compile("KeyError")).click()
    page.locator("a.chip-request_id", has_text=DEMO_STORY["failing_request"]).first.click()
    page.wait_for_url(f"**/trace/{DEMO_STORY['failing_request']}")
    expect(page.locator("table.evlist tr.is-error")).to_have_count(2)
    page.get_by_role("link", name="Errors").click()
    page.get_by_role("link", name="resolved", exact=True).click()
    page.get_by_role("link", name=re.compile("KeyError")).click()
    page.get_by_role("button", name="Mark unresolved").click()
    expect(page.locator("#group-state")).to_have_text("unresolved")
