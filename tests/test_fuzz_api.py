"""Fuzz the live API from its own OpenAPI document (obshub/web/openapi/) with schemathesis, on
both stores.

Every operation of the document is one test per store: schemathesis' examples, coverage
(boundary and invalid values, missing and wrong credentials, other methods) and fuzzing phases
send requests generated from the document to a real hub, authenticated with real tokens, and
check that no answer is a 5xx (a 503 "store unavailable" for a healthy store is a bug too), that
each status, content type, header and body is the documented one, that an operation refuses a
request without credentials, and that invalid input is refused. A request gets `REQUEST_TIMEOUT_S`
and an example `DEADLINE`, so a hang fails the run.

Bounded: `MAX_EXAMPLES` fuzzed cases per operation and store, plus the coverage phase's cases,
make 100-400 requests per operation and store (10 for the operations routes; printed by
`test_cases_per_operation`): measured ~30 s on SQLite and ~40 s on OpenSearch (2 shared cores),
besides starting the node. The run is deterministic (the same cases every time): a failure in CI
replays locally. Runs of 1,000 random cases per operation and store found nothing more.

Generated data is steered at real objects for half of the cases (`_steer`): the project of the
tokens, error groups that exist. And `POST /api/v1/checks` makes the hub probe the check's
target: every generated target is rewritten to a closed port on 127.0.0.1, so the run never
connects anywhere else.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
import schemathesis
from hypothesis import settings
from schemathesis import Case

from obshub.app import create_app
from obshub.auth import hash_token, new_token
from obshub.settings import load_settings
from obshub.web.openapi import document
from tests.conftest import BACKENDS
from tests.factories import event, now_us, request_events
from tests.hubproc import LiveHub
from tests.opensearch_node import drop_prefix

MAX_EXAMPLES = 100
REQUEST_TIMEOUT_S = 10
DEADLINE = timedelta(seconds=15)  # one example: its request plus schemathesis' checks and probes
# Real tokens of each fuzz hub's project, made here because schemathesis builds the coverage
# phase's requests (credentials included) when it collects the tests, before any hub runs.
READ, INGEST, ADMIN = new_token("read"), new_token("ingest"), new_token("admin")
GROUPS: list[str] = []  # error groups of the current fuzz hub
CASES: Counter[tuple[str, str, str]] = Counter()  # (store, operation, status) -> requests


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """The document models an NDJSON body as the array of its lines (any other value: one line).
    `json`, not orjson: integers past 64 bits are sent as generated."""
    lines = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(x) for x in lines).encode()


@schemathesis.serializer("application/x-sentry-envelope")
def _envelope(ctx: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


@schemathesis.serializer("application/x-protobuf")
def _protobuf(ctx: Any, value: Any) -> bytes:
    """An OTLP protobuf body is raw bytes (no schema): whatever was generated, as bytes."""
    return value if isinstance(value, bytes) else json.dumps(value).encode()


@schemathesis.deserializer("application/x-ndjson")
def _ndjson_answer(ctx: Any, response: Any) -> list[Any]:
    return [orjson.loads(line) for line in response.content.splitlines() if line.strip()]


def _seed(hub: LiveHub) -> None:
    """Something to find: error groups, a request across hosts, analytics events."""
    t = now_us() - 60_000_000
    lines = [
        event(
            kind="error",
            level="error",
            error={"type": f"E{i}", "value": "boom"},
            request_id="r-1",
            user_id="u-1",
            ts=t + i,
        )
        for i in range(3)
    ]
    lines += request_events("r-2", ["web-1", "web-2"], user_id="u-1", t0=t)
    lines += [event(kind="event", name="signup", user_id=f"u-{i}", attrs={"plan": "pro"}, ts=t) for i in range(3)]
    assert hub.ingest(lines).json()["accepted"] == len(lines)
    GROUPS[:] = [g["id"] for g in hub.get("/api/v1/errors").json()["groups"]]
    assert len(GROUPS) == 3


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/obshub.db"
    else:
        base = request.getfixturevalue("opensearch_url")
        url = f"{base}{'&' if '?' in base else '?'}prefix=t{uuid.uuid4().hex[:10]}"
    # Every check the fuzz defines targets a closed port of 127.0.0.1 (`_loopback`): allowed here,
    # so POST reaches past the network policy's 400 (tests/security/test_ssrf.py tests the policy).
    hub = LiveHub(url, checks_allow_networks="127.0.0.1/32").start()
    try:
        hub.store.add_token(hub.project_id, "read", hash_token(READ), "fuzz")
        hub.store.add_token(hub.project_id, "ingest", hash_token(INGEST), "fuzz")
        hub.store.add_token(hub.project_id, "admin", hash_token(ADMIN), "fuzz")
        _seed(hub)
        yield hub
        targets = {urlsplit(c["target"]).hostname for c in hub.get("/api/v1/checks").json()["checks"]}
        assert targets <= {"127.0.0.1"}, f"the fuzz defined checks probing {targets}"
    finally:
        hub.stop()
        if request.param != "sqlite":
            drop_prefix(url)


# The document as `create_app` builds it (nothing is opened); tests/test_openapi.py checks that
# the hub serves the same.
DOC = document(create_app(load_settings({}, store="sqlite:///unused.db")).routes)
schema = schemathesis.openapi.from_dict(
    DOC,
    config=schemathesis.Config.from_dict(
        {
            "request-timeout": REQUEST_TIMEOUT_S,
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "deterministic": True},
            "auth": {
                "openapi": {
                    "readToken": {"bearer": READ},
                    "adminToken": {"bearer": ADMIN},
                    "ingestToken": {"bearer": INGEST},
                    "sentryAuth": {"api_key": f"Sentry sentry_key={INGEST}"},
                    "sentryKey": {"api_key": INGEST},
                }
            },
            # Every check but `positive_data_acceptance`: a schema-valid request may still be refused,
            # since a schema cannot say everything that makes input valid (a time parameter's forms, a
            # query's syntax, an event's `ts` range): those are 400s naming the parameter.
            "checks": {"enabled": True, "positive_data_acceptance": {"enabled": False}},
            # Bodies that have no invalid value on the wire. An NDJSON body is modelled as the array of
            # its lines: a value the negative mode sends instead of an array is, on the wire, a body of
            # one line, which the hub takes (a 200 reporting the line as rejected, as documented). An
            # envelope is text: a value sent instead of a string is text too (its header line parsed as
            # documented). Their other parts get valid values (and missing or wrong credentials); the
            # Sentry parameters' invalid values go to /store/ and the preflights, which share them.
            "operations": [
                {
                    "include-operation-id": ["post_api_v1_ingest", "post_api_project_id_envelope"],
                    "generation": {"mode": "positive"},
                }
            ],
        }
    ),
)


def _loopback(case: Case) -> None:
    """POST /api/v1/checks makes the hub probe `target`: only ever a closed port of 127.0.0.1."""
    body = case.body
    target = body.get("target") if isinstance(body, dict) else None
    if case.operation.path != "/api/v1/checks" or not isinstance(body, dict) or not isinstance(target, str):
        return
    try:
        parts = urlsplit(target.strip())
        parts.port  # noqa: B018  (raises for a bad port, as the hub's parser does)
    except ValueError:
        return  # the hub refuses it (400) with the same parser
    if parts.hostname is not None:
        body["target"] = urlunsplit(parts._replace(netloc="127.0.0.1:9"))


def _steer(case: Case, hub: LiveHub) -> None:
    """Point about half of the generated ids at real objects, so the fuzz reaches past 403/404.
    Only valid values are replaced: a negative case must stay invalid."""
    params = case.path_parameters or {}
    pid = params.get("project_id")  # an int, or a string in the coverage phase
    if isinstance(pid, str) and pid.isdigit():
        pid = int(pid)
    if isinstance(pid, int) and pid >= 0 and pid % 2 == 0:
        params["project_id"] = hub.project_id
    gid = params.get("id")
    if (
        case.operation.path.startswith("/api/v1/errors/")
        and isinstance(gid, str)
        and gid
        and "/" not in gid
        and len(gid) % 2 == 0
    ):
        params["id"] = GROUPS[len(gid) % len(GROUPS)]
    body = case.body
    groups = body.get("groups") if isinstance(body, dict) else None
    listed = groups if isinstance(groups, list) else []
    names = [g for g in listed if isinstance(g, str)]
    if case.operation.path.endswith("/merge") and isinstance(body, dict) and names and len(names) == len(listed):
        body["groups"] = [GROUPS[len(g) % len(GROUPS)] if len(g) % 2 == 0 else g for g in names]


@schema.parametrize()
@settings(deadline=DEADLINE)
def test_fuzz(case: Case, fuzz_hub: LiveHub) -> None:
    _loopback(case)
    _steer(case, fuzz_hub)
    response = case.call_and_validate(base_url=fuzz_hub.url)
    store = fuzz_hub.settings.store.split(":", 1)[0]
    CASES[(store, f"{case.operation.method.upper()} {case.operation.path}", str(response.status_code))] += 1


def test_cases_per_operation(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs after the fuzz tests (same module): prints the requests each operation got, per store
    and status, and checks that every operation that ran got a real number of them."""
    per_op: Counter[tuple[str, str]] = Counter()
    for (store, op, _), n in CASES.items():
        per_op[(store, op)] += n
    with capsys.disabled():
        for (store, op), n in sorted(per_op.items()):
            statuses = " ".join(f"{s}:{c}" for (st, o, s), c in sorted(CASES.items()) if (st, o) == (store, op))
            print(f"fuzz {store:<10} {op:<42} {n:>4} requests  {statuses}")
    few = {k: n for k, n in per_op.items() if n < 3}
    assert not few, f"operations the fuzz barely reached: {few}"
