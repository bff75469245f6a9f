"""Error group pages without a browser: the resolve form needs this session's CSRF token and a
same-site origin; the list filters by state and by occurrence query."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from tests.hubproc import LiveHub
from tests.web.conftest import login_client


def _group_id(web: httpx.Client, title: str) -> str:
    html = web.get("/errors", params={"state": "all"}).text
    m = re.search(r'<a href="/errors/([^"]+)">[^\n]*' + re.escape(title), html)
    assert m, html
    return m.group(1)


def _csrf(web: httpx.Client, gid: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', web.get(f"/errors/{gid}").text)
    assert m
    return m.group(1)


def _state(web: httpx.Client, gid: str) -> str:
    m = re.search(r'id="group-state">(\w+)<', web.get(f"/errors/{gid}").text)
    assert m
    return m.group(1)


def test_state_change_needs_csrf_and_same_origin(web: httpx.Client, demo_hub: LiveHub) -> None:
    gid = _group_id(web, "payment provider timed out")
    token = _csrf(web, gid)
    url = f"/errors/{gid}/action"
    assert web.post(url, data={"action": "ignored"}, headers={"Origin": demo_hub.url}).status_code == 403
    assert (
        web.post(url, data={"action": "ignored", "csrf": "x" + token[1:]}, headers={"Origin": demo_hub.url}).status_code
        == 403
    )
    assert (
        web.post(url, data={"action": "ignored", "csrf": token}, headers={"Origin": "https://evil.example"}).status_code
        == 403
    )
    assert _state(web, gid) == "unresolved"
    r = web.post(url, data={"action": "ignored", "csrf": token}, headers={"Origin": demo_hub.url})
    assert r.status_code == 303 and r.headers["location"] == f"/errors/{gid}?done=ignored"
    assert _state(web, gid) == "ignored"
    ignored = web.get("/errors", params={"state": "ignored"}).text
    assert gid in ignored and gid not in web.get("/errors").text
    r = web.post(url, data={"action": "unresolved", "csrf": token}, headers={"Origin": demo_hub.url})
    assert r.status_code == 303 and _state(web, gid) == "unresolved"
    assert web.post(url, data={"action": "explode", "csrf": token}).status_code == 400


def test_list_filters_by_occurrence_query(web: httpx.Client) -> None:
    html = web.get("/errors", params={"q": "host:web-2", "state": "all"}).text
    assert "KeyError" in html and "TimeoutError" not in html
    r = web.get("/errors", params={"q": "host:(web-2"})
    assert r.status_code == 400 and 'role="alert"' in r.text
    assert web.get("/errors/no-such-group").status_code == 404


def test_merge_folds_one_group_into_another(tmp_path: Path) -> None:
    hub = LiveHub(f"sqlite:///{tmp_path}/obshub.db").start()
    try:
        now = time.time()
        errs = [
            {
                "ts": now - i,
                "kind": "error",
                "level": "error",
                "host": "h-1",
                "request_id": f"r-{t}-{i}",
                "message": f"{t}: boom",
                "error": {"type": t, "value": "boom"},
            }
            for t in ("ValueError", "TypeError")
            for i in range(2)
        ]
        assert hub.ingest(errs).json()["accepted"] == 4
        with login_client(hub) as web:
            target, other = _group_id(web, "ValueError"), _group_id(web, "TypeError")
            r = web.post(
                f"/errors/{target}/action",
                data={"action": "merge", "other": other, "csrf": _csrf(web, target)},
                headers={"Origin": hub.url},
            )
            assert r.status_code == 303
            html = web.get("/errors").text
            assert html.count('<a href="/errors/') == 1 and "1 merged" in html
            page = web.get(f"/errors/{target}").text
            assert re.search(r"<strong>4</strong> events", page)
            # The requests of both groups, each a link to its trace.
            assert set(re.findall(r'href="/trace/(r-\w+-\d)"', page)) == {
                "r-ValueError-0",
                "r-ValueError-1",
                "r-TypeError-0",
                "r-TypeError-1",
            }
    finally:
        hub.stop()
