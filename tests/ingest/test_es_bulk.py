"""Elasticsearch `_bulk` under /es/ (obshub/ingest/es.py), with real clients: the
`opensearch-py` bulk helper on both stores, Debian's rsyslogd with omelasticsearch, and raw
bodies for the answer's exact shape, the probes, auth forms and failure paths."""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from elasticsearch import Elasticsearch
from elasticsearch import helpers as es_helpers
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import TransportError

from obshub.errors import ConfigError
from obshub.settings import load_settings
from tests.ci import unavailable
from tests.hubproc import LiveHub, free_port, wait_until

OMELASTICSEARCH = Path(f"/usr/lib/{os.uname().machine}-linux-gnu/rsyslog/omelasticsearch.so")  # as scripts/rsyslog.sh


def _client(h: LiveHub, token: str | None = None) -> OpenSearch:
    return OpenSearch(
        hosts=[{"host": "127.0.0.1", "port": h.port, "url_prefix": "/es"}],
        http_auth=("obshub", token or h.ingest_token),
        timeout=10,
    )


def _bulk(h: LiveHub, lines: list[Any], path: str = "/es/_bulk", **headers: str) -> httpx.Response:
    body = b"".join(orjson.dumps(x) + b"\n" for x in lines)
    return httpx.post(
        f"{h.url}{path}", content=body, headers={"Authorization": f"Bearer {h.ingest_token}", **headers}, timeout=10
    )


def test_opensearch_py_bulk_helper_stores_mapped_events_and_a_retry_once(hub: LiveHub) -> None:
    client = _client(hub)
    try:
        docs: list[dict[str, Any]] = [
            {
                "_op_type": "create",
                "_index": "checkout-2026.12.06",
                "_id": f"doc-{i}",
                "@timestamp": f"2026-12-06T10:00:0{i}.250Z",
                "message": f"payment {i} declined",
                "log": {"level": "warn", "logger": "pay.gateway"},
                "host": {"name": "web-7", "ip": ["10.0.0.7"]},
                "trace": {"id": f"trace-{i}"},
                "user": {"id": "u-42"},
                "http": {"status": 402},
            }
            for i in range(3)
        ]
        ok, errors = helpers.bulk(client, docs)
        assert (ok, errors) == (3, [])
        # The shipper's retry of the same batch (its answer was lost): nothing is stored twice.
        assert helpers.bulk(client, docs) == (3, [])
        # Without an _id, into the index the URL names; the document's own `service` wins.
        ok, _ = helpers.bulk(client, [{"msg": "plain", "service": "billing"}, {"msg": "other"}], index="payments")
        assert ok == 2
    finally:
        client.close()
    events = hub.search_all()
    assert len(events) == 5
    by_msg = {e["message"]: e for e in events}
    first = by_msg["payment 0 declined"]
    assert first["ts"] == "2026-12-06T10:00:00.250000Z"
    assert (first["service"], first["host"], first["level"], first["logger"]) == (
        "checkout",  # the index name without its date
        "web-7",
        "warning",
        "pay.gateway",
    )
    assert (first["trace_id"], first["user_id"]) == ("trace-0", "u-42")
    assert first["attrs"] == {"host.ip": ["10.0.0.7"], "http.status": 402, "_index": "checkout-2026.12.06"}
    assert by_msg["plain"]["service"] == "billing" and by_msg["other"]["service"] == "payments"
    assert len(hub.search_all("trace_id:trace-1")) == 1


def test_elasticsearch_client_info_and_bulk_helper(sqlite_hub: LiveHub) -> None:
    """The `elasticsearch` client checks the product header and reads the per-item answer: a
    failed item is a BulkIndexError naming it, the others are stored."""
    h = sqlite_hub
    es = Elasticsearch(f"{h.url}/es", basic_auth=("elastic", h.ingest_token), request_timeout=10)
    try:
        assert es.info()["version"]["number"].startswith("8.")
        docs = [
            {"_index": "web", "_id": "x1", "message": "hi", "log.level": "error"},
            {"_index": "web", "message": "yo"},
        ]
        assert es_helpers.bulk(es, docs) == (2, [])
        with pytest.raises(es_helpers.BulkIndexError) as failed:
            es_helpers.bulk(
                es, [{"_index": "web", "message": "bad", "@timestamp": "nope"}, {"_index": "web", "message": "ok"}]
            )
    finally:
        es.close()
    (item,) = failed.value.errors
    assert item["index"]["status"] == 400 and "ts: cannot parse 'nope'" in item["index"]["error"]["reason"]
    stored = {e["message"]: e for e in h.search_all()}
    assert set(stored) == {"hi", "yo", "ok"} and stored["hi"]["level"] == "error"


def test_the_answer_is_shaped_as_elasticsearch_writes_it(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    r = _bulk(
        h,
        [
            {"create": {"_index": "web", "_id": "a"}},
            {"message": "one", "@timestamp": 1765015200123},
            {"index": {}},
            {"message": "two", "level": "notice-ish"},  # an unknown level: kept in attrs, not refused
        ],
        path="/es/api/_bulk",
    )
    assert r.status_code == 200 and r.headers["x-elastic-product"] == "Elasticsearch"
    body = r.json()
    assert set(body) == {"took", "errors", "items"} and body["errors"] is False
    first, second = body["items"]
    assert first == {
        "create": {
            "_index": "web",
            "_id": "a",
            "_version": 1,
            "result": "created",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": 0,
            "_primary_term": 1,
            "status": 201,
        }
    }
    assert second["index"]["_index"] == "api" and second["index"]["status"] == 201
    stored = {e["message"]: e for e in h.search_all()}
    assert stored["one"]["service"] == "web" and stored["one"]["ts"] == "2025-12-06T10:00:00.123000Z"
    assert stored["two"]["service"] == "api" and stored["two"]["id"] == second["index"]["_id"]
    assert stored["two"]["level"] == "info" and stored["two"]["attrs"]["log.level"] == "notice-ish"

    # Items the hub cannot store fail one by one, with ES's error object; the rest are stored.
    r = _bulk(
        h,
        [
            {"delete": {"_index": "web", "_id": "a"}},
            {"update": {"_index": "web", "_id": "a"}},
            {"doc": {"message": "changed"}},
            {"create": {"_index": "web"}},
            "not an object",
            {"create": {"_index": "web"}},
            {"message": "bad time", "@timestamp": "yesterday-ish"},
            {"create": {"_index": "web", "_id": "b"}},
            {"message": "three"},
        ],
    )
    assert r.status_code == 200
    body = r.json()
    assert body["errors"] is True
    statuses = [(op, v["status"]) for item in body["items"] for op, v in item.items()]
    assert statuses == [("delete", 400), ("update", 400), ("create", 400), ("create", 400), ("create", 201)]
    errors = [v["error"] for item in body["items"] for v in item.values() if "error" in v]
    assert errors[0] == {
        "type": "illegal_argument_exception",
        "reason": "obshub keeps logs: the delete action is not supported",
    }
    assert errors[2]["type"] == "document_parsing_exception" and "JSON object" in errors[2]["reason"]
    assert "ts" in errors[3]["reason"] and "line 7" in errors[3]["reason"]
    assert sorted(e["message"] for e in h.search_all()) == ["one", "three", "two"]


def test_the_probes_shippers_make_are_answered(sqlite_hub: LiveHub) -> None:
    url = f"{sqlite_hub.url}/es"
    root = httpx.get(f"{url}/")
    assert root.status_code == 200 and root.json()["version"]["number"].startswith("8.")
    assert root.headers["x-elastic-product"] == "Elasticsearch"
    assert httpx.head(f"{url}/").status_code == 200
    assert httpx.get(f"{url}/_cluster/health").json()["status"] == "green"
    assert httpx.get(f"{url}/_license").json()["license"]["status"] == "active"
    for path in ("_index_template/logs", "_template/logs", "_ilm/policy/logs", "_ingest/pipeline/p"):
        assert httpx.put(f"{url}/{path}", json={"x": 1}).json() == {"acknowledged": True}, path
    missing = httpx.get(f"{url}/_ilm/policy/logs")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "resource_not_found_exception"
    assert httpx.get(f"{url}/logs/_search").status_code == 404


def test_every_credential_form_a_shipper_can_send(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    token = h.ingest_token
    line = [{"create": {"_index": "auth"}}, {"message": "hi"}]
    b64 = base64.b64encode(f"key-id:{token}".encode()).decode()
    basic = base64.b64encode(f"any-user:{token}".encode()).decode()
    for header in (f"Bearer {token}", f"Basic {basic}", f"ApiKey {token}", f"ApiKey {b64}"):
        assert _bulk(h, line, Authorization=header).status_code == 200, header
    assert len(h.search_all()) == 4
    assert _bulk(h, line, Authorization="Basic " + base64.b64encode(b"elastic:wrong").decode()).status_code == 401
    assert _bulk(h, line, Authorization="Basic !!!").status_code == 401
    assert httpx.post(f"{h.url}/es/_bulk", content=b"{}\n{}\n").status_code == 401
    refused = _bulk(h, line, Authorization=f"Bearer {h.read_token}")
    assert refused.status_code == 403 and "ingest" in refused.json()["error"]
    # The DSN's key is public (it ships inside apps): good on the Sentry routes only.
    dsn_key = base64.b64encode(f"x:{h.sentry_key}".encode()).decode()
    assert _bulk(h, line, Authorization=f"Basic {dsn_key}").status_code == 403
    assert httpx.post(f"{h.url}/loki/api/v1/push", json={"streams": []}, auth=("x", h.sentry_key)).status_code == 403
    with pytest.raises(TransportError) as raised:
        helpers.bulk(_client(h, token="wrong"), [{"_index": "x", "message": "no"}])
    assert raised.value.status_code == 401


def test_bodies_that_cannot_be_framed_are_a_400_for_the_whole_request(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    auth = {"Authorization": f"Bearer {h.ingest_token}"}
    for body, words in (
        (b"", "body is required"),
        (b"{not json\n{}\n", "line 1"),
        (b'{"create":{"_index":"x"}}\n', "no source line"),
        (b'{"create":{}}\n{}\n', "no index"),
        (b'{"upsert":{}}\n{}\n', "unknown action"),
        (b'{"create":{},"index":{}}\n{}\n', "one key"),
        (b'{"create":[]}\n{}\n', "metadata must be an object"),
        (b'{"create":{"_index":"x","_id":""}}\n{}\n', "_id"),
        (b'{"create":{"_index":7}}\n{}\n', "index"),
    ):
        r = httpx.post(f"{h.url}/es/_bulk", content=body, headers=auth)
        assert r.status_code == 400 and words in r.json()["error"], (body, r.text)
    r = httpx.post(f"{h.url}/es/_bulk", content=b"x", headers={**auth, "Content-Encoding": "br"})
    assert r.status_code == 415
    gz = gzip.compress(b'{"create":{"_index":"gz"}}\n{"message":"zipped"}\n')
    r = httpx.post(f"{h.url}/es/_bulk", content=gz, headers={**auth, "Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json()["errors"] is False
    assert h.search_all()[0]["service"] == "gz"


def test_a_store_outage_refuses_the_whole_request_with_retry_after(sqlite_hub: LiveHub) -> None:
    h = sqlite_hub
    h.store.close()
    try:
        r = _bulk(h, [{"create": {"_index": "down"}}, {"message": "lost?"}])
    finally:
        h.store.open()
    assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
    assert "items" not in r.json()  # no per-item answer a shipper could take for partial success
    assert _bulk(h, [{"create": {"_index": "up"}}, {"message": "kept"}]).json()["errors"] is False


def test_back_pressure_refuses_the_whole_request_with_429(tmp_path: Path) -> None:
    h = LiveHub(f"sqlite:///{tmp_path}/o.db", max_inflight=1, admission_wait_s=0).start()
    try:
        held = _HeldBulk(h)
        try:
            r = httpx.post(
                f"{h.url}/es/_bulk",
                content=iter([b'{"create":{"_index":"x"}}\n{"message":"m"}\n']),  # chunked: a full slot
                headers={"Authorization": f"Bearer {h.ingest_token}"},
            )
        finally:
            held.release()
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert held.statuses == [200]
    finally:
        h.stop()


class _HeldBulk:
    """A chunked bulk request (size unknown: it takes a full slot) held open until release()."""

    def __init__(self, h: LiveHub) -> None:
        import threading

        self.h = h
        self.gate = threading.Event()
        self.statuses: list[int] = []
        self.thread = threading.Thread(target=self._post)
        self.thread.start()
        from tests.hubproc import metric

        wait_until(lambda: metric(h, "obshub_ingest_inflight_requests") >= 1, 5, "the held request")

    def _body(self) -> Iterator[bytes]:
        yield b'{"create":{"_index":"held"}}\n'
        self.gate.wait(10)
        yield b'{"message":"held"}\n'

    def _post(self) -> None:
        r = httpx.post(
            f"{self.h.url}/es/_bulk", content=self._body(), headers={"Authorization": f"Bearer {self.h.ingest_token}"}
        )
        self.statuses.append(r.status_code)

    def release(self) -> None:
        self.gate.set()
        self.thread.join(10)


# -- rsyslog ------------------------------------------------------------------------------------


def _rsyslog_conf(work: Path, tcp_port: int, h: LiveHub) -> str:
    """docs/shippers.md's rsyslog config, with this test's ports, token and directories."""
    return f"""
global(workDirectory="{work}")
module(load="imtcp")
module(load="omelasticsearch")
template(name="obshub-json" type="list" option.jsonf="on") {{
  property(outname="@timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="host" name="hostname" format="jsonf")
  property(outname="severity" name="syslogseverity-text" format="jsonf")
  property(outname="service" name="programname" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
}}
input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="to-obshub")
ruleset(name="to-obshub") {{
  action(type="omelasticsearch" server="http://127.0.0.1:{h.port}/es" searchIndex="syslog"
         template="obshub-json" bulkmode="on" esVersion.major="8"
         uid="rsyslog" pwd="{h.ingest_token}" errorFile="{work}/es-errors.json"
         queue.type="linkedlist" action.resumeRetryCount="-1")
}}
"""


def test_rsyslog_omelasticsearch_ships_syslog_lines(hub: LiveHub) -> None:
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(rsyslogd).exists() or not OMELASTICSEARCH.exists():
        unavailable("rsyslogd with omelasticsearch (scripts/rsyslog.sh)")
    # Not under tmp_path: pytest makes its directories 0700, and rsyslogd runs as nobody as root.
    work = Path(tempfile.mkdtemp(prefix="obshub-rsyslog-"))
    tcp_port = free_port()
    conf = work / "rsyslog.conf"
    conf.write_text(_rsyslog_conf(work, tcp_port, hub))
    # Unprivileged: as nobody when the tests run as root (CI), else as whoever runs them.
    user: dict[str, Any] = {}
    if os.geteuid() == 0:
        work.chmod(0o777)
        user = {"user": "nobody", "group": "nogroup"}
    proc = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **user,
    )
    try:
        wait_until(lambda: _listening(tcp_port) or proc.poll() is not None, 10, "rsyslogd's TCP input")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        with socket.create_connection(("127.0.0.1", tcp_port)) as s:
            for i in range(20):
                pri = 8 + (3 if i % 5 == 0 else 6)  # facility user; err or info
                s.sendall(f"<{pri}>1 2026-12-06T09:00:{i:02d}.500Z web-3 checkout 4242 - - order {i} done\n".encode())
        wait_until(lambda: len(hub.search_all()) >= 20, 20, "20 syslog lines stored", every=0.2)
        events = {e["message"]: e for e in hub.search_all()}
        assert len(events) == 20
        errors = work / "es-errors.json"
        assert not errors.exists(), errors.read_text()
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
        shutil.rmtree(work, ignore_errors=True)
    e = events["order 5 done"]
    assert (e["service"], e["host"], e["level"], e["ts"]) == (
        "checkout",
        "web-3",
        "error",
        "2026-12-06T09:00:05.500000Z",
    )
    assert events["order 6 done"]["level"] == "info"
    assert e["attrs"] == {"_index": "syslog"}


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        time.sleep(0.05)
        return False


def test_es_index_field_chooses_what_the_index_name_fills(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"OBSHUB_ES_INDEX_FIELD \(es_index_field\): 'message' is not one of"):
        load_settings({"OBSHUB_ES_INDEX_FIELD": "message"})
    h = LiveHub(f"sqlite:///{tmp_path}/o.db", es_index_field="env").start()
    try:
        r = _bulk(h, [{"create": {"_index": "staging-2026.12.06"}}, {"message": "m", "service": "api"}])
        assert r.json()["errors"] is False
        (ev,) = h.search_all()
    finally:
        h.stop()
    assert (ev["env"], ev["service"]) == ("staging", "api")
    h = LiveHub(f"sqlite:///{tmp_path}/o2.db", es_index_field="").start()
    try:
        assert _bulk(h, [{"create": {"_index": "web"}}, {"message": "n"}]).json()["errors"] is False
        (none,) = h.search_all()
    finally:
        h.stop()
    assert "service" not in none and none["attrs"] == {"_index": "web"}
