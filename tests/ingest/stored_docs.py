"""What the hub stores for a fixed set of NDJSON lines, for tests/ingest/test_stored_documents.py.

The lines: loghub samples (real production logs) sent the two ways clients send them (the
agent's canonical form, and an app's own JSON with aliases, extra keys and nested attrs),
tests/factories.py's events, and hand-written edge cases (every timestamp form, levels, kinds,
errors, numbers at the JSON bounds, secrets for the scrubber, invalid lines). What is stored:
the answer's per-line problems, the error groups, each event's OpenSearch bulk line (action and
`_source` bytes as sent) and its SQLite row.

`python -m tests.ingest.stored_docs OUT` writes them as the frozen expected output; run with the
code to freeze on `PYTHONPATH` (it was made from the code before the typed line decoder,
`typed_line.decode_line`, so the test compares the new path with the old one).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import orjson
import zstandard

from obshub.digest import Scrubber, digest
from obshub.ingest.native import parse_ndjson
from obshub.settings import Settings
from obshub.store.opensearch import writer
from obshub.store.sqlite.writer import to_rows
from tests.data import LOGHUB
from tests.factories import event, request_events

EXPECTED = Path(__file__).resolve().parent.parent / "data" / "stored_documents.json.zst"
RECEIVED_AT = 1_796_000_000_123_456  # µs; fixed, so events without `ts` store the same
T0 = 1_795_990_000_000_000
PER_SAMPLE = 120  # loghub lines taken from each sample
_HEAD = b'{"create":{"_index":"obshub-events","_id":'


def _loghub_lines() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(LOGHUB.glob("*/*_2k.log_structured.csv")):
        name = path.parent.name
        with path.open(newline="", errors="replace") as f:
            rows = list(csv.DictReader(f))[:PER_SAMPLE]
        for i, row in enumerate(rows):
            ts = T0 + i * 1_000_317
            level = (row.get("Level") or "").strip()
            if i % 2 == 0:  # the agent's form: canonical keys, ts in seconds, flat attrs
                ev: dict[str, Any] = {
                    "id": f"{name}-{i}",
                    "ts": ts / 1e6,
                    "message": row["Content"],
                    "host": name.lower(),
                    "service": name.lower(),
                    "attrs": {"file": f"/var/log/{name}.log", "offset": i * 97, "event_id": row["EventId"]},
                }
                if level:
                    ev["level"] = level
                if i % 4 == 0:  # every string field an SDK sets
                    ev |= {
                        "env": "prod",
                        "release": f"1.{i}",
                        "logger": f"{name}.main",
                        "request_id": f"req-{i // 8}",
                        "trace_id": f"{i:032x}",
                        "span_id": f"{i:016x}",
                        "user_id": f"u-{i % 7}",
                        "session_id": f"s-{i % 5}",
                        "name": row["EventId"],
                    }
            else:  # an app's own JSON: aliases, extra keys, nested attrs
                ev = {
                    "id": f"{name}-{i}",
                    "timestamp": f"2026-11-30T0{i % 10}:1{i % 6}:2{i % 10}.{i:06d}Z",
                    "msg": row["Content"],
                    "service": name,
                    "component": row.get("Component") or row.get("Node") or name,
                    "attrs": {"template": {"id": row["EventId"], "text": row["EventTemplate"]}, "line": i},
                }
                if level:
                    ev["severity"] = level
            out.append(ev)
    return out


def _factory_lines() -> list[dict[str, Any]]:
    # (event()'s own message counts calls in this process: set here, so the lines are fixed)
    out = [
        event(id=f"factory-{i}", ts=T0 + i, message=f"factory event {i}", attrs={"n": i, "ok": i % 2 == 0})
        for i in range(20)
    ]
    out += request_events("req-7", ["web-1", "api-2", "db-3"], user_id="u-9", t0=T0)
    for i, ev in enumerate(out[20:]):
        ev["id"] = f"factory-req-{i}"
    return out


_TRACE = 'Traceback (most recent call last):\n  File "app.py", line 3, in <module>\n    f()\nValueError: bad'

# (line, why it is here): canonical and not, valid and not.
_EDGES: list[Any] = [
    {"id": "e-ts-s", "ts": 1_795_990_000, "message": "seconds"},
    {"id": "e-ts-ms", "ts": 1_795_990_000_123, "message": "ms"},
    {"id": "e-ts-us", "ts": 1_795_990_000_123_456, "message": "µs"},
    {"id": "e-ts-ns", "ts": 1_795_990_000_123_456_789, "message": "ns"},
    {"id": "e-ts-float", "ts": 1_795_990_000.5, "message": "float s"},
    {"id": "e-ts-sdk", "ts": "2026-11-30T01:02:03.456789Z", "message": "sdk form"},
    {"id": "e-ts-offset", "ts": "2026-11-30T01:02:03+02:00", "message": "offset"},
    {"id": "e-ts-text-num", "ts": "1795990000", "message": "epoch as text"},
    {"id": "e-ts-none", "ts": None, "message": "null ts"},
    {"id": "e-no-ts", "message": "no ts"},
    {"id": "e-ts-bad", "ts": "yesterday"},
    {"id": "e-ts-bool", "ts": True},
    {"id": "e-lv-upper", "level": "WARN", "message": "upper"},
    {"id": "e-lv-num", "level": 40, "message": "python 40"},
    {"id": "e-lv-text-num", "level": "3", "message": "syslog 3"},
    {"id": "e-lv-bad", "level": "loud"},
    {"id": "e-lv-bool", "level": False},
    {"id": "e-kind-event", "kind": "event", "message": "signup", "user_id": "u-1"},
    {"id": "e-kind-event-name", "kind": "event", "name": "checkout", "attrs": {"amount": 12.5}},
    {"id": "e-kind-event-bad", "kind": "event"},
    {"id": "e-kind-span", "kind": "span", "name": "GET /", "trace_id": "ab" * 16, "span_id": "cd" * 8},
    {"id": "e-kind-check", "kind": "check", "message": "reserved"},
    {"id": "e-kind-bad", "kind": "metric"},
    {"id": "e-kind-error-msg", "kind": "error", "message": "boom"},
    {"id": "e-kind-error-none", "kind": "error"},
    {"id": "e-err-obj", "error": {"type": "KeyError", "value": "x", "stack": [{"filename": "a.py", "lineno": 3}]}},
    {"id": "e-err-text", "error": _TRACE},
    {"id": "e-err-stack-text", "error": {"type": "ValueError", "value": "bad", "stack": _TRACE}},
    {"id": "e-err-log", "level": "error", "message": _TRACE},
    {"id": "e-err-bad", "error": 5},
    {"id": "e-fp", "kind": "error", "message": "grouped", "fingerprint": ["{{ default }}", "tenant", 7]},
    {"id": "e-fp-bad", "fingerprint": "x"},
    {"id": "e-id-check", "message": "reserved id", "kind": "log", "attrs": {}, "level": "info", "x": 1},
    {"id": "check:1:x:2"},
    {"id": ""},
    {"id": 5, "message": "number id"},
    {"id": "x" * 129},
    {"id": "e-str-num", "message": 42, "host": 3.5, "service": "svc"},
    {"id": "e-str-bool", "host": True},
    {"id": "e-null-fields", "message": None, "host": None, "attrs": None, "error": None, "fingerprint": None},
    {"id": "e-attrs-types", "attrs": {"s": "v", "i": -7, "f": 0.1, "b": True, "n": None, "e": "", "q": 'a"b'}},
    {"id": "e-attrs-ints", "attrs": {"max": 2**63 - 1, "min": -(2**63), "u64": 2**64 - 1}},
    {"id": "e-attrs-floats", "attrs": {"tiny": 5e-324, "big": 1.7976931348623157e308, "neg0": -0.0, "e": 1e16}},
    {"id": "e-attrs-nested", "attrs": {"a": {"b": {"c": 1}}, "a.d": 2, "empty": {}}},
    {"id": "e-attrs-list", "attrs": {"tags": ["a", "b", 3], "none": []}},
    {"id": "e-attrs-list-bad", "attrs": {"tags": [{"a": 1}]}},
    {"id": "e-attrs-not-obj", "attrs": [1, 2]},
    {"id": "e-attrs-dotkeys", "attrs": {"a.b": 1, "%x": 2.5, " ": 3, "ünï": "cödé"}},
    {"id": "e-attrs-long-key", "attrs": {"k" * 128: 1}},
    {"id": "e-attrs-too-long-key", "attrs": {"k" * 129: 1}},
    {"id": "e-attrs-value-4096", "attrs": {"v": "é" * 4096}},
    {"id": "e-attrs-value-8192", "attrs": {"v": "é" * 8192}},
    {"id": "e-attrs-value-big", "attrs": {"v": "é" * 8193}},
    {"id": "e-attrs-many", "attrs": {f"k{i}": i for i in range(256)}},
    {"id": "e-attrs-too-many", "attrs": {f"k{i}": i for i in range(257)}},
    {"id": "e-alias-both", "message": "canonical", "msg": "alias", "ts": T0, "time": "ignored"},
    {"id": "e-extra-top", "message": "x", "status": 200, "attrs": {"path": "/"}},
    {"id": "e-extra-clash", "status": 200, "attrs": {"status": 201}},
    {"id": "e-received-at", "received_at": 5, "group_id": "g"},
    {"id": "e-secrets", "message": "login password=hunter2 token: abc Authorization: Bearer xyz.abc"},
    {"id": "e-secret-attrs", "attrs": {"password": "p", "api_key": "k", "db_pass": "d", "url": "https://u:pw@h/x"}},
    {"id": "e-card", "message": "card 4111 1111 1111 1111 and 4111111111111111 paid"},
    {"id": "e-card-digits", "message": "order 12345678 of 2026-11-30 at 10.0.0.1:8080"},
    {"id": "e-unicode-digits", "message": "٤١١١١١١١١١١١١١١١ arabic digits"},
    {"id": "e-unicode", "message": "héllo wörld ☃ \u2028 line sep", "host": "hôst"},
    {"id": "e-long-message", "message": "m" * 70_000},
    {"id": "e-dup-keys", "attrs": {"a": 1}},
    "a string line",
    ["a", "list"],
    42,
    {"id": "e-last", "message": "last"},
]
_RAW_LINES = [
    b"",
    b"   ",
    b"{not json",
    b'{"id":"e-dup","id":"e-dup-2","attrs":{"a":1,"b":2,"a":3}}',
    b'{"id":"e-surrogate","message":"\\ud800"}',
    b'{"id":"e-inf","attrs":{"x":1e999}}',
    b'{"id":"e-nan","attrs":{"x":NaN}}',
    b'{"id":"e-bom"}\xef\xbb\xbf',
    b'{"id":"e-trailing"} x',
    b'{"id":"e-ws"}   ',
    b'{"id":"e-bad-utf8","message":"\xff"}',
    b'{"id":"e-ctrl","message":"a\tb"}',
    b'{"id":"e-neg-zero-int","attrs":{"z":-0}}',
    b'{"id":"e-ts-huge","ts":123456789012345678901234567890}',
    b'{"id":"e-int-past-i64","attrs":{"neg":-9223372036854775809,"big":123456789012345678901234567890}}',
    b'{"id":"e-ts-past-u64","ts":18446744073709551616}',
    b'{"id":"e-exp-int","ts":1.7959900001e15,"attrs":{"z":1E2}}',
]


def lines() -> list[bytes]:
    """The NDJSON lines, in order."""
    objs = [*_loghub_lines(), *_factory_lines(), *_EDGES]
    return [orjson.dumps(o) for o in objs] + _RAW_LINES


def stored(body_lines: list[bytes]) -> dict[str, Any]:
    """What the hub would store for these lines: per-line problems, groups, bulk lines, rows."""
    settings = Settings()
    out: dict[str, Any] = {"problems": [], "groups": [], "bulk": [], "rows": []}
    # Bodies of 100 lines, as agents send them (the typed pass keeps state per body).
    for k in range(0, len(body_lines), 100):
        parsed = parse_ndjson(b"\n".join(body_lines[k : k + 100]), RECEIVED_AT, settings)
        groups = digest(parsed.events, Scrubber())
        out["problems"] += [[k + line, why] for line, why in parsed.problems]
        out["groups"] += [[g.id, g.title, g.type, g.culprit, g.level, g.version, g.first_seen] for g in groups.values()]
        out["bulk"] += [_bulk_line(ev).decode() for ev in parsed.events]
        out["rows"] += [list(r) for r in to_rows(7, parsed.events)]
    return out


def _bulk_line(ev: Any) -> bytes:
    line = getattr(writer, "bulk_line", None)
    if line is not None:
        return bytes(line(_HEAD, 7, ev))
    from obshub.store.opensearch.mappings import doc_id, to_doc  # the code before bulk_line

    dumps = orjson.dumps
    return b"".join((_HEAD, dumps(doc_id(7, ev["id"])), b"}}\n", dumps(to_doc(7, ev)), b"\n"))


def load_expected() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(zstandard.ZstdDecompressor().decompress(EXPECTED.read_bytes()))
    return data


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else EXPECTED
    target.write_bytes(zstandard.ZstdCompressor(level=19).compress(orjson.dumps(stored(lines()))))
    print(f"wrote {target}")
