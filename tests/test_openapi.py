"""The OpenAPI document (`GET /api/v1/openapi.json`, obshub/web/openapi/) against the hub:

- it describes exactly the routes the app registers (API, ingest, Sentry, operations; not the
  web UI's pages) and the routes table of docs/api.md, and a route without a spec fails;
- it is valid OpenAPI 3.1 and served without a token;
- real answers of a live hub on both stores, successes and the errors each operation documents
  (400, 401, 403, 404, 408, 413, 415), match their documented status, content type, headers and
  JSON Schema. Each operation must have been checked with every status it documents but the
  store's 429/503 and the conflicts a test cannot provoke; a new operation or status without a
  live check here fails too.

tests/test_fuzz_api.py fuzzes the live API from the same document.
"""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from starlette.routing import Route

from obshub.app import create_app
from obshub.jobs.rollups import RollupJob
from obshub.settings import load_settings
from obshub.web import pages
from obshub.web.openapi import MissingSpec, api_routes, document
from tests.factories import event, now_us, request_events
from tests.hubproc import HubProcess, LiveHub

ROOT = Path(__file__).resolve().parents[1]
_CONVERTER = re.compile(r"\{(\w+):\w+\}")
# Statuses no test provokes on a healthy store: its push-back (429) and outage (503), covered by
# the ingest and store fault tests; and the conflicts of two writers in the same microsecond.
NOT_PROVOKED = {"429", "503"}
RACES = {
    ("PATCH", "/api/v1/errors/{id}", "409"),
    ("POST", "/api/v1/errors/{id}/merge", "409"),
    ("POST", "/api/v1/dashboards", "409"),  # the 200-dashboard cap: tests/contract/test_dashboards_api.py
}
# Checked by test_config_file_conflicts_match_the_document (a hub with a config file).
CONFIG_CONFLICTS = {
    ("POST", "/api/v1/checks", "409"),
    ("DELETE", "/api/v1/checks/{name}", "409"),
    ("POST", "/api/v1/alerts", "409"),
    ("DELETE", "/api/v1/alerts/{name}", "409"),
    ("POST", "/api/v1/metrics", "409"),
    ("DELETE", "/api/v1/metrics/{name}", "409"),
}


def _app(tmp_path: Path) -> Any:
    return create_app(load_settings({}, store=f"sqlite:///{tmp_path}/obshub.db"))


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}


def test_the_document_describes_every_registered_route_and_only_those(tmp_path: Path) -> None:
    app = _app(tmp_path)
    ui = {id(r) for r in pages.routes}
    registered = {
        (m, _CONVERTER.sub(r"{\1}", r.path))
        for r in app.routes
        if isinstance(r, Route) and id(r) not in ui
        for m in r.methods or ()
        if m != "HEAD"
    }
    assert ("POST", "/api/{project_id}/envelope/") in registered and ("GET", "/metrics") in registered
    assert _operations(document(app.routes)) == registered
    # ... and the routes table at the top of docs/api.md (its other tables list the UI's pages)
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    table = text.split("## Routes", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\|\s*([A-Z]+)\s*\|\s*`([^`]+)`\s*\|", table, re.M))
    assert rows == registered


def test_a_route_without_a_spec_or_a_spec_without_a_route_fails(tmp_path: Path) -> None:
    app = _app(tmp_path)

    async def nothing(request: Any) -> None: ...

    with pytest.raises(MissingSpec, match=r"without a spec in obshub/web/openapi/: \['GET /api/v1/new'\]"):
        document([*app.routes, Route("/api/v1/new", nothing)])
    with pytest.raises(MissingSpec, match=r"specs without a route: \['GET /metrics'\]"):
        document([r for r in app.routes if getattr(r, "path", "") != "/metrics"])
    assert ("GET", "/api/v1/new") in api_routes([Route("/api/v1/new", nothing)])
    assert api_routes([Route("/search", nothing)]) == []  # a web page is not part of the API


def test_the_served_document_is_valid_openapi_3_1_and_needs_no_token(sqlite_hub: LiveHub) -> None:
    r = httpx.get(f"{sqlite_hub.url}/api/v1/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    validate_spec(doc)  # raises OpenAPIValidationError naming the offending part
    assert doc["openapi"] == "3.1.0"
    assert doc == document(sqlite_hub.app.routes)
    for op in (o for ops in doc["paths"].values() for o in ops.values()):
        assert op["summary"] and op["responses"] and "security" in op, op


# -- real answers ------------------------------------------------------------------------------


class Conformance:
    """Checks answers against the document and remembers which (operation, status) it saw."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()

    def _resolve(self, obj: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in obj:
            node: Any = self.doc
            for part in obj["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    def _validate(self, value: Any, schema: dict[str, Any], what: str) -> None:
        # The whole document as the root, so `#/components/...` references resolve; its other keys
        # (openapi, info, paths) are no JSON Schema keywords and are ignored.
        errors = sorted(Draft202012Validator({**self.doc, **schema}).iter_errors(value), key=str)
        assert not errors, f"{what}: {errors[0].message} at {list(errors[0].absolute_path)}: {str(value)[:300]}"

    def __call__(self, method: str, path: str, r: httpx.Response, status: int) -> Any:
        """Assert `r` has `status` and is what the document says for it; returns the parsed body."""
        what = f"{method} {path} -> {r.status_code}"
        assert r.status_code == status, f"{what}, expected {status}: {r.text[:300]}"
        responses = self.doc["paths"][path][method.lower()]["responses"]
        assert str(status) in responses, f"{what}: status not documented"
        spec = self._resolve(responses[str(status)])
        for name, header in spec.get("headers", {}).items():
            if header.get("required"):
                assert name in r.headers, f"{what}: header {name} missing"
            if name in r.headers:
                self._validate(r.headers[name], header["schema"], f"{what} header {name}")
        body: Any = None
        content = spec.get("content")
        if not content:
            assert r.content == b"", what
        else:
            media = r.headers["content-type"].split(";")[0].strip()
            assert media in content, f"{what}: content type {media} not documented ({', '.join(content)})"
            if media == "application/json":
                body = r.json()
            elif media == "application/x-ndjson":
                body = [orjson.loads(line) for line in r.content.splitlines()]
            else:
                body = r.text
            self._validate(body, content[media]["schema"], what)
        self.seen.add((method, path, str(status)))
        return body

    def unchecked(self) -> list[str]:
        out = []
        for path, ops in self.doc["paths"].items():
            for method, op in ops.items():
                for status in op["responses"]:
                    key = (method.upper(), path, status)
                    if status not in NOT_PROVOKED and key not in RACES | CONFIG_CONFLICTS and key not in self.seen:
                        out.append(" ".join(key))
        return out


@pytest.fixture
def live(store_url: str) -> Iterator[LiveHub]:
    """A live hub with small ingest limits and a short body deadline, so the 413s and 408s are
    cheap to provoke."""
    h = LiveHub(store_url, max_lines=20, max_wire_bytes=64 * 1024, max_body_bytes=128 * 1024, body_timeout_s=1).start()
    yield h
    h.stop()


def _stalling() -> Iterator[bytes]:
    """A chunked body that stops for longer than the `live` hub's body deadline (1 s): 408."""
    yield b"{}"
    time.sleep(1.5)
    yield b"\n"


def _client(hub: LiveHub | HubProcess, token: str | None = None, **headers: str) -> httpx.Client:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=hub.url, headers=headers, timeout=30)


def test_live_answers_match_the_document(live: LiveHub) -> None:
    doc = httpx.get(f"{live.url}/api/v1/openapi.json").json()
    check = Conformance(doc)
    read = _client(live, live.read_token)
    ingest = _client(live, live.ingest_token)
    admin = _client(live, live.admin_token)
    anon = _client(live)
    try:
        _ingest(check, live, ingest, read, anon)
        _sentry(check, live, anon)
        _otlp(check, live, ingest, anon)
        _queries(check, read, ingest, anon)
        _errors(check, read, ingest, anon)
        _analytics(check, read, ingest, anon)
        _product_analytics(check, read, ingest, anon)
        _aggregate(check, read, ingest, anon)
        _dashboards(check, read, ingest, anon)
        _checks(check, read, admin, anon)
        _alerts(check, read, ingest, anon)
        _metrics(check, live, read, ingest, anon)
        _operations_routes(check, anon)
    finally:
        for c in (read, ingest, admin, anon):
            c.close()
    missing = check.unchecked()
    assert not missing, "documented answers this test never checked (add a live case):\n" + "\n".join(missing)


def _auth_errors(
    check: Conformance, method: str, path: str, url: str, anon: httpx.Client, wrong: str, **kw: Any
) -> None:
    """401 without a token (with WWW-Authenticate) and 403 with a token of the other scope."""
    check(method, path, anon.request(method, url, **kw), 401)
    check(method, path, anon.request(method, url, headers={"Authorization": f"Bearer {wrong}"}, **kw), 403)


def _ingest(check: Conformance, hub: LiveHub, ingest: httpx.Client, read: httpx.Client, anon: httpx.Client) -> None:
    t = now_us() - 60_000_000
    lines = [
        event(
            kind="error",
            level="error",
            error={"type": "KeyError", "value": "'cart'"},
            request_id="r-1",
            user_id="u-1",
            ts=t,
            attrs={"http": {"status": 500}, "tags": ["a", "b"]},
        ),
        *request_events("r-1", ["web-1", "web-2"], user_id="u-1", t0=t + 1),
        *request_events("r-2", ["web-2"], user_id="u-1", t0=t + 10),
        *[
            event(kind="event", name="signup", user_id=f"u-{i}", attrs={"plan": "pro", "price": 9.5}, ts=t)
            for i in range(3)
        ],
    ]
    body = b"\n".join(orjson.dumps(x) for x in lines) + b'\n{"level": "loud"}\nnot json\n'
    path = "/api/v1/ingest"
    answer = check("POST", path, ingest.post(path, content=body, headers={"X-Obshub-Sent-At": str(t / 1e6)}), 200)
    assert answer["accepted"] == len(lines) and [r["line"] for r in answer["rejected"]] == [
        len(lines) + 1,
        len(lines) + 2,
    ]
    check("POST", path, ingest.post(path, content=gzip.compress(body), headers={"Content-Encoding": "gzip"}), 200)
    check("POST", path, ingest.post(path, content=b"  \n"), 400)
    check("POST", path, ingest.post(path, content=b"nope\n"), 400)
    check("POST", path, ingest.post(path, content=b"x", headers={"Content-Encoding": "gzip"}), 400)
    check("POST", path, ingest.post(path, content=b"{}\n" * 21), 413)
    check("POST", path, ingest.post(path, content=b"{}" * 40_000), 413)
    check("POST", path, ingest.post(path, content=body, headers={"Content-Encoding": "br"}), 415)
    check("POST", path, ingest.post(path, content=_stalling()), 408)
    _auth_errors(check, "POST", path, path, anon, hub.read_token, content=body)


def _otlp(check: Conformance, hub: LiveHub, ingest: httpx.Client, anon: httpx.Client) -> None:
    """The OTLP routes (docs/otlp.md): both encodings, partial success, every error a Status."""
    t = str((now_us() - 60_000_000) * 1000)
    for prefix in ("", "/otlp"):
        for signal, top, scopes, records, record in (
            ("logs", "resourceLogs", "scopeLogs", "logRecords", {"timeUnixNano": t, "body": {"stringValue": "hi"}}),
            ("traces", "resourceSpans", "scopeSpans", "spans", {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "s"}),
        ):
            path = f"{prefix}/v1/{signal}"

            def body(*recs: dict[str, Any], top: str = top, scopes: str = scopes, records: str = records) -> bytes:
                return orjson.dumps({top: [{scopes: [{records: list(recs)}]}]})

            js = {"Content-Type": "application/json"}
            pb = {"Content-Type": "application/x-protobuf"}
            assert check("POST", path, ingest.post(path, content=body(record), headers=js), 200) == {}
            partial = check("POST", path, ingest.post(path, content=body(record, {"traceId": "x"}), headers=js), 200)
            assert partial["partialSuccess"]["errorMessage"]
            check("POST", path, ingest.post(path, content=b"", headers=pb), 200)  # an empty request: nothing to store
            check("POST", path, ingest.post(path, content=b"{", headers=js), 400)
            check("POST", path, ingest.post(path, content=b"\xff\xff", headers=pb), 400)
            check("POST", path, ingest.post(path, content=body(*[record] * 21), headers=js), 413)
            check("POST", path, ingest.post(path, content=body(record), headers={"Content-Type": "text/plain"}), 415)
            check("POST", path, ingest.post(path, content=body(record), headers={**js, "Content-Encoding": "br"}), 415)
            check("POST", path, ingest.post(path, content=_stalling(), headers=js), 408)
            check("POST", path, anon.post(path, content=body(record), headers=js), 401)
            wrong = {**js, "Authorization": f"Bearer {hub.read_token}"}
            check("POST", path, anon.post(path, content=body(record), headers=wrong), 403)


def _sentry(check: Conformance, hub: LiveHub, anon: httpx.Client) -> None:
    pid = hub.project_id
    key = {"X-Sentry-Auth": f"Sentry sentry_key={hub.ingest_token}, sentry_version=7"}
    ev = {
        "event_id": "9ec79c33ec9942ab8353589fcb2e04dc",
        "level": "error",
        "server_name": "web-1",
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": "bad",
                    "stacktrace": {
                        "frames": [
                            {
                                "module": "shop.web",
                                "function": "pay",
                                "filename": "shop/web.py",
                                "lineno": 3,
                                "in_app": True,
                            }
                        ]
                    },
                }
            ]
        },
        "tags": {"request_id": "r-9"},
        "user": {"id": "u-9"},
        "contexts": {"trace": {"trace_id": "t9"}},
    }
    for kind in ("envelope", "store"):
        path = f"/api/{{project_id}}/{kind}/"
        url = f"/api/{pid}/{kind}/"
        good = (
            orjson.dumps({"event_id": ev["event_id"]}) + b'\n{"type":"event"}\n' + orjson.dumps(ev) + b"\n"
            if kind == "envelope"
            else orjson.dumps(ev)
        )
        bad = (
            b'{}\n{"type":"event"}\n{"level":"loud","message":"m"}\n'
            if kind == "envelope"
            else b'{"level":"loud","message":"m"}'
        )
        assert check("POST", path, anon.post(url, content=good, headers=key), 200)["id"] == ev["event_id"]
        check("POST", path, anon.post(url, params={"sentry_key": hub.ingest_token}, content=good), 200)
        answer = check("POST", path, anon.post(url, content=bad, headers=key), 400)
        assert answer["stored"] == 0 and "level" in answer["detail"]
        check("POST", path, anon.post(url, content=b"", headers=key), 400)
        check("POST", path, anon.post(url, content=good), 401)
        check("POST", path, anon.post(url, content=good, headers={"Authorization": f"Bearer {hub.read_token}"}), 403)
        check("POST", path, anon.post(f"/api/{pid + 1}/{kind}/", content=good, headers=key), 403)
        check("POST", path, anon.post(f"/api/x{pid}/{kind}/", content=good, headers=key), 404)
        check("POST", path, anon.post(url, content=b"x" * 70_000, headers=key), 413)
        check("POST", path, anon.post(url, content=good, headers={**key, "Content-Encoding": "compress"}), 415)
        check("POST", path, anon.post(url, content=_stalling(), headers=key), 408)
        check("OPTIONS", path, anon.options(url), 200)
        check("OPTIONS", path, anon.options(f"/api/x{pid}/{kind}/"), 404)


def _queries(check: Conformance, read: httpx.Client, ingest: httpx.Client, anon: httpx.Client) -> None:
    path = "/api/v1/search"
    page = check("GET", path, read.get(path, params={"limit": 2, "order": "asc"}), 200)
    assert len(page["events"]) == 2 and page["next_cursor"]
    check("GET", path, read.get(path, params={"cursor": page["next_cursor"], "order": "asc", "q": ""}), 200)
    assert check("GET", path, read.get(path, params={"q": "(a"}), 400)["column"] == 1
    check("GET", path, read.get(path, params={"limit": "0"}), 400)
    _auth_errors(check, "GET", path, path, anon, _token(ingest))
    trace = check("GET", "/api/v1/trace/{id}", read.get("/api/v1/trace/r-1"), 200)
    assert trace["hosts"] == ["web-1", "web-2"] and trace["error_count"] == 1
    check("GET", "/api/v1/trace/{id}", read.get(f"/api/v1/trace/{quote('a/b?c', safe='')}"), 200)
    check("GET", "/api/v1/trace/{id}", read.get("/api/v1/trace/r-1", params={"from": "yesterday"}), 400)
    _auth_errors(check, "GET", "/api/v1/trace/{id}", "/api/v1/trace/r-1", anon, _token(ingest))
    path, url = "/api/v1/users/{user_id}/timeline", "/api/v1/users/u-1/timeline"
    first = check("GET", path, read.get(url, params={"limit": 1}), 200)
    assert len(first["requests"]) == 1 and first["next_cursor"]
    check("GET", path, read.get(url, params={"limit": 1, "cursor": first["next_cursor"]}), 200)
    check("GET", path, read.get(url, params={"cursor": "nope"}), 400)
    _auth_errors(check, "GET", path, url, anon, _token(ingest))
    path = "/api/v1/export"
    text = check("GET", path, read.get(path, params={"q": "r-1", "columns": "ts,host,message,http.status"}), 200)
    assert text.startswith("ts,host,message,http.status\r\n")
    rows = check("GET", path, read.get(path, params={"format": "ndjson", "from": "-1d"}), 200)
    assert len(rows) >= 3
    check("GET", path, read.get(path, params={"format": "xml"}), 400)
    _auth_errors(check, "GET", path, path, anon, _token(ingest))


def _token(client: httpx.Client) -> str:
    return client.headers["Authorization"].split()[1]


def _errors(check: Conformance, read: httpx.Client, ingest: httpx.Client, anon: httpx.Client) -> None:
    path = "/api/v1/errors"
    groups = check("GET", path, read.get(path, params={"state": "unresolved", "q": "host:web-1"}), 200)["groups"]
    assert len(groups) == 2  # the NDJSON error and the Sentry one, both on web-1
    check("GET", path, read.get(path, params={"state": "gone"}), 400)
    _auth_errors(check, "GET", path, path, anon, _token(ingest))
    one, other = groups[0]["id"], groups[1]["id"]
    path = "/api/v1/errors/{id}"
    detail = check("GET", path, read.get(f"/api/v1/errors/{one}"), 200)
    assert detail["latest_event"]["group_id"] == one and len(detail["occurrences"]) >= 1
    check("GET", path, read.get("/api/v1/errors/nope"), 404)
    _auth_errors(check, "GET", path, f"/api/v1/errors/{one}", anon, _token(ingest))
    assert (
        check("PATCH", path, read.patch(f"/api/v1/errors/{one}", json={"state": "resolved"}), 200)["state"]
        == "resolved"
    )
    check("PATCH", path, read.patch(f"/api/v1/errors/{one}", json={"state": "gone"}), 400)
    check("PATCH", path, read.patch("/api/v1/errors/nope", json={"state": "resolved"}), 404)
    _auth_errors(check, "PATCH", path, f"/api/v1/errors/{one}", anon, _token(ingest), json={"state": "ignored"})
    path, url = "/api/v1/errors/{id}/merge", f"/api/v1/errors/{one}/merge"
    assert check("POST", path, read.post(url, json={"groups": [other]}), 200)["merged"] == [other]
    check("POST", path, read.post(url, json={"groups": []}), 400)
    check("POST", path, read.post(url, content=b"{"), 400)
    check("POST", path, read.post(url, json={"groups": ["nope"]}), 404)
    _auth_errors(check, "POST", path, url, anon, _token(ingest), json={"groups": [other]})


def _analytics(check: Conformance, read: httpx.Client, ingest: httpx.Client, anon: httpx.Client) -> None:
    cases = {
        "/api/v1/analytics/events": ({"from": "-1d"}, {"limit": "x"}),
        "/api/v1/analytics/properties": ({"event": "signup"}, {}),
        "/api/v1/analytics/values": ({"event": "signup", "property": "price"}, {"event": "signup"}),
        "/api/v1/analytics/series": (
            {"event": "signup", "interval": "1h", "from": "-6h", "unique": "1"},
            {"interval": "0m"},
        ),
    }
    for path, (good, bad) in cases.items():
        body = check("GET", path, read.get(path, params=good), 200)
        assert any(body.values()), (path, body)
        check("GET", path, read.get(path, params=bad), 400)
        _auth_errors(check, "GET", path, path, anon, _token(ingest), params=good)


def _product_analytics(check: Conformance, read: httpx.Client, ingest: httpx.Client, anon: httpx.Client) -> None:
    cases = {
        "/api/v1/analytics/funnel": ({"steps": ["signup", {"event": "signup"}], "breakdown": "price"}, {"steps": []}),
        "/api/v1/analytics/retention": ({"start": {"event": "signup"}, "period": "week"}, {"period": "year"}),
        "/api/v1/analytics/experiment": ({"steps": ["signup", "signup"], "variant": "price"}, {"steps": ["a", "b"]}),
        "/api/v1/analytics/paths": ({"event": "signup", "window": "1d"}, {"event": "signup", "steps": 9}),
    }
    for path, (good, bad) in cases.items():
        body = check("POST", path, read.post(path, json={**good, "from": "-1d"}), 200)
        assert any(body.values()), (path, body)
        check("POST", path, read.post(path, json=bad), 400)
        _auth_errors(check, "POST", path, path, anon, _token(ingest), json=good)
        if path != "/api/v1/analytics/retention":  # per session: "sessions" in place of "users"
            body = check("POST", path, read.post(path, json={**good, "from": "-1d", "unit": "session"}), 200)
            assert body["unit"] == "session" and "sessions" in (body["steps"][0] if "steps" in body else body), body
            check("POST", path, read.post(path, json={**good, "unit": "device"}), 400)


def _aggregate(check: Conformance, read: httpx.Client, ingest: httpx.Client, anon: httpx.Client) -> None:
    path = "/api/v1/aggregate"
    good = {"from": "-1d", "measure": "count", "group_by": "host,service", "top": "2", "interval": "auto"}
    body = check("GET", path, read.get(path, params=good), 200)
    assert body["total"]["count"] > 0 and body["groups"] and body["groups"][0]["other"]
    check("GET", path, read.get(path, params={**good, "format": "csv"}), 200)
    check("GET", path, read.get(path, params={"measure": "p95(price)", "from": "-1d"}), 200)
    check("GET", path, read.get(path, params={"measure": "median"}), 400)
    _auth_errors(check, "GET", path, path, anon, _token(ingest), params=good)
    posted = check("POST", path, read.post(path, json={**good, "group_by": ["host", "service"], "top": 2}), 200)
    assert posted["groups"] == body["groups"]
    check("POST", path, read.post(path, json={"top": 0}), 400)
    _auth_errors(check, "POST", path, path, anon, _token(ingest), json=good)


def _dashboards(check: Conformance, read: httpx.Client, ingest: httpx.Client, anon: httpx.Client) -> None:
    path = "/api/v1/dashboards"
    doc = {
        "title": "Shop KPIs",
        "time": {"from": "-6h"},
        "panels": [
            {"title": "p95", "request": {"measure": "p95(price)", "group_by": ["host"], "interval": "auto"}},
            # Analyses saved from the Analytics page: the API's bodies without the range.
            *(
                {"title": a, "chart": "bar", "source": "analytics", "request": {"analysis": a, **req}}
                for a, req in (
                    ("funnel", {"steps": [{"event": "visit"}, {"event": "buy", "q": "plan:pro"}], "window": "2d"}),
                    ("experiment", {"steps": [{"event": "visit"}, {"event": "buy"}], "variant": "arm"}),
                    ("retention", {"start": {"event": "visit"}, "return": {}, "period": "week", "bounded": False}),
                    ("series", {"events": ["visit", "buy"], "interval": "day", "unique": True, "top": 3}),
                )
            ),
        ],
    }
    created = check("POST", path, read.post(path, json=doc), 201)
    assert created["slug"] == "shop-kpis" and created["panels"][0]["chart"] == "line"
    check("POST", path, read.post(path, json={**doc, "refresh_s": 60}), 200)
    bad = check("POST", path, read.post(path, json={**doc, "panels": [{"title": "x", "chart": "pie"}]}), 400)
    assert bad["error"].startswith("panels[0].chart:")
    _auth_errors(check, "POST", path, path, anon, _token(ingest), json=doc)
    listed = check("GET", path, read.get(path), 200)
    assert listed == {"dashboards": [{"slug": "shop-kpis", "title": "Shop KPIs", "panels": 5, "public": False}]}
    _auth_errors(check, "GET", path, path, anon, _token(ingest))
    one, url = "/api/v1/dashboards/{slug}", "/api/v1/dashboards/shop-kpis"
    assert check("GET", one, read.get(url), 200)["refresh_s"] == 60
    check("GET", one, read.get("/api/v1/dashboards/nope"), 404)
    _auth_errors(check, "GET", one, url, anon, _token(ingest))
    _auth_errors(check, "DELETE", one, url, anon, _token(ingest))
    assert check("DELETE", one, read.delete(url), 200) == {"deleted": "shop-kpis"}
    check("DELETE", one, read.delete(url), 404)


def _checks(check: Conformance, read: httpx.Client, admin: httpx.Client, anon: httpx.Client) -> None:
    path = "/api/v1/checks"
    # A name resolving to loopback: taken, and refused when probed (the default network policy).
    definition = {"name": "db", "target": "tcp://localhost:9", "interval_s": 3600, "timeout_s": 0.5}
    created = check("POST", path, admin.post(path, json=definition), 201)
    assert created["source"] == "api" and created["expect_status"] is None
    check("POST", path, admin.post(path, json={**definition, "interval_s": 7200}), 200)
    check("POST", path, admin.post(path, json={**definition, "interval_s": 2}), 400)
    check("POST", path, admin.post(path, json={**definition, "target": "tcp://127.0.0.1:9"}), 400)
    _auth_errors(check, "POST", path, path, anon, _token(read), json=definition)
    assert [c["name"] for c in check("GET", path, read.get(path), 200)["checks"]] == ["db"]
    _auth_errors(check, "GET", path, path, anon, _token(admin))
    path = "/api/v1/checks/{name}"
    _auth_errors(check, "DELETE", path, "/api/v1/checks/db", anon, _token(read))
    assert check("DELETE", path, admin.delete("/api/v1/checks/db"), 200) == {"deleted": "db"}
    check("DELETE", path, admin.delete("/api/v1/checks/db"), 404)


def _alerts(check: Conformance, read: httpx.Client, ingest: httpx.Client, anon: httpx.Client) -> None:
    path = "/api/v1/alerts"
    rule = {"name": "quiet", "kind": "absence", "query": "service:billing", "window": "5m", "labels": {"team": "pay"}}
    created = check("POST", path, read.post(path, json=rule), 201)
    assert created["source"] == "api" and created["state"] == "ok" and created["instances"] == []
    check("POST", path, read.post(path, json={**rule, "window": "10m"}), 200)
    assert "window" in check("POST", path, read.post(path, json={**rule, "window": "soon"}), 400)["error"]
    _auth_errors(check, "POST", path, path, anon, _token(ingest), json=rule)
    assert [r["name"] for r in check("GET", path, read.get(path), 200)["alerts"]] == ["quiet"]
    _auth_errors(check, "GET", path, path, anon, _token(ingest))
    one = "/api/v1/alerts/{name}"
    assert check("GET", one, read.get("/api/v1/alerts/quiet"), 200)["definition"]["window"] == "10m"
    check("GET", one, read.get("/api/v1/alerts/nope"), 404)
    _auth_errors(check, "GET", one, "/api/v1/alerts/quiet", anon, _token(ingest))
    mute = "/api/v1/alerts/{name}/mute"
    muted = check("POST", mute, read.post("/api/v1/alerts/quiet/mute", json={"for": "2h"}), 200)
    assert muted["state"] == "muted" and muted["muted_until"]
    check("POST", mute, read.post("/api/v1/alerts/quiet/mute", json={"until": "2000-01-01T00:00:00Z"}), 400)
    check("POST", mute, read.post("/api/v1/alerts/nope/mute", json={"for": "1h"}), 404)
    _auth_errors(check, "POST", mute, "/api/v1/alerts/quiet/mute", anon, _token(ingest), json={"for": "1h"})
    unmute = "/api/v1/alerts/{name}/unmute"
    assert check("POST", unmute, read.post("/api/v1/alerts/quiet/unmute"), 200)["state"] == "ok"
    check("POST", unmute, read.post("/api/v1/alerts/nope/unmute"), 404)
    _auth_errors(check, "POST", unmute, "/api/v1/alerts/quiet/unmute", anon, _token(ingest))
    history = "/api/v1/alerts/{name}/history"
    assert check("GET", history, read.get("/api/v1/alerts/quiet/history"), 200) == {"name": "quiet", "history": []}
    check("GET", history, read.get("/api/v1/alerts/nope/history"), 404)
    _auth_errors(check, "GET", history, "/api/v1/alerts/quiet/history", anon, _token(ingest))
    _auth_errors(check, "DELETE", one, "/api/v1/alerts/quiet", anon, _token(ingest))
    assert check("DELETE", one, read.delete("/api/v1/alerts/quiet"), 200) == {"deleted": "quiet"}
    check("DELETE", one, read.delete("/api/v1/alerts/quiet"), 404)


def _metrics(check: Conformance, live: LiveHub, read: httpx.Client, ingest: httpx.Client, anon: httpx.Client) -> None:
    path = "/api/v1/metrics"
    metric = {"name": "visits", "query": "service:web", "group_by": "host", "unit": "visits"}
    created = check("POST", path, read.post(path, json=metric), 201)
    assert created["source"] == "api" and created["rollup"]["computed_at"] is None
    check("POST", path, read.post(path, json={**metric, "max_groups": 5}), 200)
    assert check("POST", path, read.post(path, json={**metric, "measure": "p95"}), 400)["error"].startswith("measure")
    _auth_errors(check, "POST", path, path, anon, _token(ingest), json=metric)
    hub = live.app.state.hub
    RollupJob(hub.settings, hub.store, hub.telemetry).run()
    listed = check("GET", path, read.get(path), 200)["metrics"]
    assert [m["name"] for m in listed] == ["visits"] and listed[0]["rollup"]["backfilled"] is True
    _auth_errors(check, "GET", path, path, anon, _token(ingest))
    series = "/api/v1/metrics/{name}/series"
    url = "/api/v1/metrics/visits/series"
    assert check("GET", series, read.get(url), 200)["total"]
    assert check("GET", series, read.get(url, params={"format": "csv"}), 200).startswith("row,group,t,count,value")
    check("GET", series, read.get(url, params={"interval": "week"}), 400)
    check("GET", series, read.get("/api/v1/metrics/nope/series"), 404)
    _auth_errors(check, "GET", series, url, anon, _token(ingest))
    one = "/api/v1/metrics/{name}"
    _auth_errors(check, "DELETE", one, "/api/v1/metrics/visits", anon, _token(ingest))
    assert check("DELETE", one, read.delete("/api/v1/metrics/visits"), 200) == {"deleted": "visits"}
    check("DELETE", one, read.delete("/api/v1/metrics/visits"), 404)


def _operations_routes(check: Conformance, anon: httpx.Client) -> None:
    check("GET", "/api/v1/openapi.json", anon.get("/api/v1/openapi.json"), 200)
    check("GET", "/healthz", anon.get("/healthz"), 200)
    check("GET", "/readyz", anon.get("/readyz"), 200)
    assert "obshub_ingest_events_total" in check("GET", "/metrics", anon.get("/metrics"), 200)


def test_config_file_conflicts_match_the_document(tmp_path: Path) -> None:
    """The 409s of a check declared in the hub's config file (a file only `obshub serve` reads)."""
    cfg = tmp_path / "hub.toml"
    cfg.write_text(
        '[[checks]]\nname = "home"\ntarget = "tcp://127.0.0.1:9"\nproject = "test"\n'
        '[[alerts]]\nname = "home-down"\nkind = "check"\ncheck = "home"\nproject = "test"\n'
        '[[metrics]]\nname = "visits"\nproject = "test"\n'
    )
    hub = HubProcess(f"sqlite:///{tmp_path}/obshub.db", env={"OBSHUB_CONFIG": str(cfg)}).start()
    try:
        check = Conformance(httpx.get(f"{hub.url}/api/v1/openapi.json").json())
        with _client(hub, hub.admin_token) as admin:
            body = {"name": "home", "target": "tcp://localhost:9"}
            check("POST", "/api/v1/checks", admin.post("/api/v1/checks", json=body), 409)
            check("DELETE", "/api/v1/checks/{name}", admin.delete("/api/v1/checks/home"), 409)
        with _client(hub, hub.read_token) as read:
            rule = {"name": "home-down", "kind": "absence", "query": "x"}
            check("POST", "/api/v1/alerts", read.post("/api/v1/alerts", json=rule), 409)
            check("DELETE", "/api/v1/alerts/{name}", read.delete("/api/v1/alerts/home-down"), 409)
            listed = read.get("/api/v1/alerts").json()["alerts"]
            assert [(r["name"], r["source"]) for r in listed] == [("home-down", "config")]
            check("POST", "/api/v1/metrics", read.post("/api/v1/metrics", json={"name": "visits"}), 409)
            check("DELETE", "/api/v1/metrics/{name}", read.delete("/api/v1/metrics/visits"), 409)
    finally:
        hub.stop()
    assert check.seen >= CONFIG_CONFLICTS
