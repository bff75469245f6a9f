"""Loki push, `POST /loki/api/v1/push`: what Promtail, Grafana Alloy, Fluent Bit's and Vector's
loki outputs and the `python-logging-loki` handler send, so they ship to the hub unchanged.

Two bodies, told apart by Content-Type as Loki does (`application/json`; anything else is protobuf):
- JSON: `{"streams": [{"stream": {labels}, "values": [["<ns>", "line", {metadata}?], ...]}]}`,
  optionally gzip'ed (Content-Encoding).
- protobuf (`application/x-protobuf`): Loki's `PushRequest` (pkg/push/push.proto), snappy
  block-compressed as Loki expects it; decoded here by a small wire reader (`_fields`): streams
  (1) of labels text (1) and entries (2) of timestamp (1: seconds 1, nanos 2), line (2) and
  structured metadata (3: name 1, value 2).

Each entry is an event: the line is the message, the stream's labels and the entry's structured
metadata (which wins) fill the fields of `_LABELS`, every other label goes to attrs. Its id is
sha256(labels, timestamp, line)[:32]: Loki itself keeps one of identical entries of a stream,
and a client's retry of a push the hub had stored stores nothing twice.

Answers: 204 when every entry was stored; 400 naming the entries that could not be read or
validated (the others are stored: Promtail does not retry a 4xx); auth, size, back-pressure and
outages as on every ingest route (obshub/ingest/pipeline.py: 401/403, 413, 415, 429/503 with
Retry-After).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import cramjam
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from obshub.auth import shipper_token
from obshub.errors import BodyError, FieldError, ParseError
from obshub.events import NormalizedEvent, normalize, normalize_level
from obshub.ingest import documents, pipeline
from obshub.settings import Settings

__all__ = ["EDGE", "parse_json", "parse_labels", "parse_protobuf", "push", "routes"]

_LABELS: dict[str, tuple[str, ...]] = {
    "service": ("service_name", "service", "app", "application", "job"),
    "host": ("host", "hostname", "instance", "node"),
    "env": ("env", "environment", "deployment_environment"),
    "level": ("level", "detected_level", "severity", "lvl"),
    "logger": ("logger",),
    "release": ("version", "release"),
    "trace_id": ("trace_id", "traceID", "traceid"),
    "span_id": ("span_id", "spanID"),
    "request_id": ("request_id",),
    "user_id": ("user_id",),
    "session_id": ("session_id",),
}
_US_MIN = 100_000_000_000_000  # a Loki timestamp is ns: below 1e17 ns (1973) is a unit mistake

# A stream's labels and its entries: (ns since the epoch, line, structured metadata).
Stream = tuple[dict[str, str], list[tuple[int, str, dict[str, str]]]]


# -- labels text: `{app="web", host="a\"b"}` --------------------------------------------------------


def parse_labels(text: str) -> dict[str, str]:
    """Prometheus label text, as Loki's protobuf streams carry it; ValueError naming the place."""
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError(f'labels {text[:60]!r} are not of the form {{name="value", ...}}')
    out: dict[str, str] = {}
    i, n = 1, len(s) - 1
    while True:
        while i < n and s[i] in " \t,":
            i += 1
        if i >= n:
            return out
        eq = s.find("=", i)
        name = s[i:eq].strip() if eq > 0 else ""
        if not name or not name.replace("_", "a").isalnum() or eq + 1 >= n or s[eq + 1] != '"':
            raise ValueError(f'labels {text[:60]!r}: expected name="value" at character {i}')
        i, value = eq + 2, []
        while True:
            if i >= n:
                raise ValueError(f"labels {text[:60]!r}: unterminated value of {name!r}")
            c = s[i]
            if c == '"':
                break
            if c == "\\" and i + 1 < n:
                i += 1
                c = {"n": "\n", "t": "\t"}.get(s[i], s[i])
            value.append(c)
            i += 1
        out[name] = "".join(value)
        i += 1


# -- protobuf -----------------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message: an int for a varint, bytes for a length-delimited
    field; fixed-width fields are skipped. ValueError on a truncated or unknown wire type."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("a field runs past the end of its message")
            yield number, buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(buf):
                raise ValueError("a fixed-width field runs past the end of its message")
        else:
            raise ValueError(f"wire type {wire} is not supported")


def _text(value: int | bytes, what: str) -> str:
    if not isinstance(value, bytes):
        raise ValueError(f"{what} must be a string")
    return value.decode()  # UnicodeDecodeError is a ValueError


def _entry(buf: bytes) -> tuple[int, str, dict[str, str]]:
    ns, line, meta = 0, "", {}
    for number, value in _fields(buf):
        if number == 1 and isinstance(value, bytes):  # google.protobuf.Timestamp
            seconds = nanos = 0
            for n, v in _fields(value):
                if n == 1 and isinstance(v, int):
                    seconds = v - (1 << 64) if v >= 1 << 63 else v
                elif n == 2 and isinstance(v, int):
                    nanos = v
            ns = seconds * 1_000_000_000 + nanos
        elif number == 2:
            line = _text(value, "line")
        elif number == 3 and isinstance(value, bytes):
            pair = {n: _text(v, "structured metadata") for n, v in _fields(value) if n in (1, 2)}
            meta[pair.get(1, "")] = pair.get(2, "")
    return ns, line, meta


def parse_protobuf(body: bytes, max_bytes: int) -> list[Stream | str]:
    """A snappy-compressed PushRequest -> its streams (a str: why that stream cannot be read).
    BodyError: not snappy, or inflating past `max_bytes`; ParseError: not a PushRequest."""
    try:
        size, _ = _varint(body, 0)  # the snappy block's uncompressed length comes first
    except ValueError:
        raise BodyError(400, "invalid snappy body: no length header") from None
    if size > max_bytes:
        raise BodyError(413, f"decoded body of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as e:
        raise BodyError(400, f"invalid snappy body: {e}") from None
    streams: list[Stream | str] = []
    try:
        for number, value in _fields(raw):
            if number != 1 or not isinstance(value, bytes):
                continue
            labels, entries = "", []
            try:
                for n, v in _fields(value):
                    if n == 1:
                        labels = _text(v, "labels")
                    elif n == 2 and isinstance(v, bytes):
                        entries.append(_entry(v))
                streams.append((parse_labels(labels), entries))
            except ValueError as e:
                streams.append(str(e))
    except ValueError as e:
        raise ParseError(f"body is not a Loki PushRequest (protobuf): {e}") from None
    return streams


def parse_json(body: bytes) -> list[Stream | str]:
    """`{"streams": [...]}` -> its streams (a str: why that stream cannot be read)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ParseError(f"body is not JSON: {e.args[0] if e.args else e}") from None
    listed = doc.get("streams") if isinstance(doc, dict) else None
    if not isinstance(listed, list):
        raise ParseError('body must be {"streams": [{"stream": {labels}, "values": [["<ns>", "line"], ...]}]}')
    streams: list[Stream | str] = []
    for s in listed:
        labels = s.get("stream") if isinstance(s, dict) else None
        values = s.get("values") if isinstance(s, dict) else None
        if not isinstance(labels, dict) or not isinstance(values, list):
            streams.append('a stream needs "stream" (an object of labels) and "values" (a list)')
            continue
        entries = []
        for v in values:
            if not (isinstance(v, list) and len(v) in (2, 3) and isinstance(v[1], str)):
                entries.append((0, "", {"": 'each value must be ["<ns>", "line"] or ["<ns>", "line", {metadata}]'}))
                continue
            ts = v[0]
            if isinstance(ts, str) and ts.isascii() and ts.isdigit() and len(ts) <= 20:
                ns = int(ts)
            elif isinstance(ts, int) and not isinstance(ts, bool):
                ns = ts
            else:
                ns = -1
            meta = v[2] if len(v) == 3 else {}
            if not isinstance(meta, dict) or not all(isinstance(x, str) for x in meta.values()):
                meta = {"": "structured metadata must be an object of strings"}
            entries.append((ns, v[1], meta))
        if not all(isinstance(x, str) for x in labels.values()):  # (str() of a value nested 1,000 deep: a 500)
            streams.append("label values must be strings")
            continue
        streams.append((labels, entries))
    return streams


# -- streams -> events ------------------------------------------------------------------------------


def _mapped(fields: dict[str, str]) -> dict[str, Any]:
    """Labels or structured metadata -> the event fields of `_LABELS` (removed from `fields`)."""
    out: dict[str, Any] = {}
    for name, keys in _LABELS.items():
        for key in keys:
            if key in fields and name not in out:
                out[name] = fields.pop(key)
    return out


def _event(labels: dict[str, str], ns: int, line: str, meta: dict[str, str]) -> dict[str, Any]:
    """One entry -> an event. A line that is a JSON object (Fluent Bit's `Line_Format json`, JSON
    logs shipped by Promtail or Alloy) gives its fields as a bulk document does
    (obshub/ingest/documents.py); per field, structured metadata wins over the line, the line over
    the stream's labels."""
    if "" in meta:  # the reader's note on an entry it could not read
        raise FieldError("values", meta[""])
    if ns < _US_MIN * 1000:
        raise FieldError("timestamp", "must be nanoseconds since the epoch, as a string of digits")
    stream, entry = dict(labels), dict(meta)
    out: dict[str, Any] = {"ts": ns // 1000, "message": line, **_mapped(stream)}
    attrs: dict[str, Any] = stream
    doc = documents.from_line(line)
    if doc is not None:
        attrs = {**attrs, **doc.pop("attrs")}
        out.update(doc)
    out.update(_mapped(entry))
    attrs.update(entry)
    if "level" in out:
        try:
            normalize_level(out["level"])
        except FieldError:  # a level only this client knows: kept in attrs, the line stored
            attrs["level"] = out.pop("level")
    out["attrs"] = attrs
    canon = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    out["id"] = hashlib.sha256(f"loki\0{canon}\0{ns}\0{line}".encode()).hexdigest()[:32]
    return out


def _parse(body: bytes, received_at: int, settings: Settings, protobuf: bool) -> pipeline.Parsed:
    if not body or body.isspace():
        raise ParseError("empty body: send a Loki push request")
    streams = parse_protobuf(body, settings.max_body_bytes) if protobuf else parse_json(body)
    events: list[NormalizedEvent] = []
    positions: list[int] = []
    problems: list[tuple[int, str]] = []
    n = 0
    for s_no, stream in enumerate(streams, 1):
        if isinstance(stream, str):
            problems.append((n, f"stream {s_no}: {stream}"))
            continue
        labels, entries = stream
        for e_no, (ns, line, meta) in enumerate(entries, 1):
            n += 1
            if n > settings.max_lines:
                raise BodyError(413, f"more than {settings.max_lines} entries in one request")
            try:
                events.append(normalize(_event(labels, ns, line, meta), received_at, settings.limits))
                positions.append(n)
            except FieldError as e:
                problems.append((n, f"stream {s_no} entry {e_no}: {e}"))
    return pipeline.Parsed(events, positions, problems)


def _answer(done: pipeline.Ingested) -> Response:
    problems = [why for _, why in done.parsed.problems]
    problems += [f"entry {n}: the store refused it: {why}" for n, why in done.refused()]
    if problems:
        stored = done.result.accepted + done.result.duplicates
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        return JSONResponse({"error": f"{len(problems)} rejected: {shown}", "stored": stored}, status_code=400)
    return Response(status_code=204)


def _credentials(request: Request) -> tuple[str | None, int | None]:
    return shipper_token(request.headers), None


def _protobuf(request: Request) -> bool:
    ctype = (request.headers.get("content-type") or "").lower()
    return "json" not in ctype


EDGE = pipeline.Edge(
    protocol="loki",
    parse=lambda body, received_at, settings: _parse(body, received_at, settings, protobuf=True),
    answer=_answer,
    credentials=_credentials,
    encodings=("identity", "gzip", "deflate", "zstd"),
)
_JSON_EDGE = replace(EDGE, parse=lambda body, received_at, settings: _parse(body, received_at, settings, False))


async def push(request: Request) -> Response:
    return await pipeline.run(request, EDGE if _protobuf(request) else _JSON_EDGE)


# A Mount, like /es/: another product's API, outside obshub's own (and its OpenAPI document).
routes: list[BaseRoute] = [
    Mount("/loki", routes=[Route("/api/v1/push", push, methods=["POST"])]),
]
