"""Index layout, explicit mappings, and the event <-> document conversion.

Layout (docs/opensearch.md explains the choices):

    <prefix>-events     data stream, all projects (`project_id` field), backing indices
                        .ds-<prefix>-events-NNNNNN, rolled over by `lifecycle.maintain`
    <prefix>-state      projects, tokens, the project id counter, public key claims (state.py)

One stream for all projects, not one per project: a stream per project multiplies shards
(each costs ~10-50 MB heap on the node), and every query filters on `project_id` anyway.

Attributes. `attrs` is a flat dict of arbitrary keys and JSON values. It is kept verbatim in
`_source` (`enabled: false`: never parsed into the mapping) and indexed through three fixed,
bounded fields, so no app can explode the mapping or hit a type conflict:

    attrs_keys  keyword  every key present (exists, and the analytics property list)
    attrs_kv    keyword  "key=<value as compact JSON>" (equality and prefix with the same
                         typing as the SQLite backend: 1, "1", true and "true" are distinct)
    attrs_num   object   numeric values only, one `double` per key (dynamic template), for
                         `attrs.duration_ms:>500`. Keys are escaped ('.' -> %2E, '%' -> %25) so
                         `a` (number) and `a.b` never collide as object vs leaf. Bounded by
                         `index.mapping.total_fields.limit`; see writer.py for what happens
                         beyond it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from obshub.events import CORRELATION_KEYS

__all__ = [
    "EVENT_FIELDS",
    "KEYWORD_FIELDS",
    "TOTAL_FIELDS_LIMIT",
    "Names",
    "attr_kv",
    "doc_id",
    "event_template",
    "from_doc",
    "num_field",
    "small_index_body",
    "to_doc",
]

# The order of the normalized event dict (obshub.events / the SQLite backend's columns).
EVENT_FIELDS = (
    "id",
    "ts",
    "received_at",
    "kind",
    "level",
    "message",
    "service",
    "host",
    "env",
    "release",
    "logger",
    "request_id",
    "trace_id",
    "span_id",
    "user_id",
    "session_id",
    "name",
    "error",
    "group_id",
    "attrs",
)
KEYWORD_FIELDS = (
    "id",
    "kind",
    "level",
    "service",
    "host",
    "env",
    "release",
    "logger",
    "name",
    "group_id",
    *CORRELATION_KEYS,
)
_STRINGS = (
    "message",
    "service",
    "host",
    "env",
    "release",
    "logger",
    "request_id",
    "trace_id",
    "span_id",
    "user_id",
    "session_id",
    "name",
    "group_id",
)
# 30 fixed fields + this many numeric attribute keys per backing index. A rollover starts a new
# index, so the budget renews daily; past it, events still store (writer.py).
TOTAL_FIELDS_LIMIT = 2000
# Lucene rejects a term over 32,766 bytes; values longer than this many characters are kept in
# _source but not indexed for exact match. Event limits (16 KiB values) stay below it.
_KV_IGNORE_ABOVE = 16_600
_MESSAGE_RAW_IGNORE_ABOVE = 8_191  # 8,191 chars * 4 bytes < 32,766: any message that fits

# How `message` splits into words, the rule of SQLite's FTS5 `unicode61 tokenchars '_'`
# (docs/api.md, "Words"): a word is a run of letters, digits (any script) and `_`; every other
# character separates words, so `vshard.leader` is `vshard` + `leader` and `10.0.0.1` is four
# words (the standard analyzer kept both whole: `vshard` found 22 events here, 28 on SQLite).
# Case and accents are ignored. The combining accents FTS5 strips (the 25 below) are removed
# before splitting, so `cafe` + U+0301 is `cafe` as on SQLite; `asciifolding` strips precomposed
# accents (é -> e) and also folds a few letters FTS5 keeps (ß -> ss, ø -> o, æ -> ae).
_FTS5_DIACRITICS = "\u0300-\u0304\u0306-\u030c\u030f\u0311\u031b\u0323-\u0328\u032d\u032e\u0330\u0331"
# Lucene refuses a term over 32,766 bytes (the standard analyzer cut words at 255 characters);
# a message may hold a 40 KB run of letters. 1,000 UTF-16 units are at most 3,000 bytes.
_MAX_WORD = 1_000
WORDS_ANALYSIS: dict[str, Any] = {
    "char_filter": {
        "obshub_accents": {"type": "pattern_replace", "pattern": f"[{_FTS5_DIACRITICS}]", "replacement": ""}
    },
    "tokenizer": {"obshub_words": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}\\p{Co}_]+"}},
    "filter": {"obshub_long": {"type": "truncate", "length": _MAX_WORD}},
    "analyzer": {
        "obshub_words": {
            "type": "custom",
            "char_filter": ["obshub_accents"],
            "tokenizer": "obshub_words",
            "filter": ["lowercase", "asciifolding", "obshub_long"],
        }
    },
}


class Names:
    """Index and template names for one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.events = f"{prefix}-events"
        self.events_template = f"{prefix}-events"
        self.state = f"{prefix}-state"
        self.rollups = f"{prefix}-rollups"  # values of defined metrics (rollups.py)


def event_template(names: Names, shards: int, replicas: int | None) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "number_of_shards": shards,
        "mapping.total_fields.limit": TOTAL_FIELDS_LIMIT,
        # Default durability: each bulk is fsynced to the translog before it is acknowledged.
        "translog.durability": "request",
        "analysis": WORDS_ANALYSIS,
    }
    if replicas is not None:
        settings["number_of_replicas"] = replicas
    kw = {"type": "keyword"}
    props: dict[str, Any] = {
        "@timestamp": {"type": "date", "format": "epoch_millis"},  # required by data streams
        "project_id": {"type": "integer"},
        "ts": {"type": "long"},  # µs since epoch: exact, the sort key
        "received_at": {"type": "long"},
        "message": {
            "type": "text",
            "analyzer": "obshub_words",
            "fields": {"raw": {"type": "keyword", "ignore_above": _MESSAGE_RAW_IGNORE_ABOVE}},
        },
        "error": {"type": "object", "enabled": False},
        "attrs": {"type": "object", "enabled": False},
        "attrs_keys": kw,
        "attrs_kv": {"type": "keyword", "ignore_above": _KV_IGNORE_ABOVE},
        "attrs_num": {"type": "object", "dynamic": True},
        **{f: kw for f in KEYWORD_FIELDS},
    }
    return {
        "index_patterns": [f"{names.events}*"],
        "data_stream": {},
        "priority": 200,
        "template": {
            "settings": settings,
            "mappings": {
                "dynamic": "strict",
                "dynamic_templates": [
                    {"attrs_num": {"path_match": "attrs_num.*", "mapping": {"type": "double"}}},
                ],
                "properties": props,
            },
        },
        "_meta": {"obshub_schema": 2},  # 2: `message` split by WORDS_ANALYSIS
    }


def small_index_body(properties: dict[str, Any], replicas: int | None) -> dict[str, Any]:
    """An ordinary single-shard index for mutable state (a few docs per project)."""
    settings: dict[str, Any] = {"number_of_shards": 1, "auto_expand_replicas": "0-1"}
    if replicas is not None:
        settings = {"number_of_shards": 1, "number_of_replicas": replicas}
    return {"settings": settings, "mappings": {"dynamic": "strict", "properties": properties}}


def num_field(key: str) -> str:
    """Field name of a numeric attribute: dots would make `a.b` an object under `a`."""
    return "attrs_num." + key.replace("%", "%25").replace(".", "%2E")


_ID_MAX_BYTES = 512  # OpenSearch refuses a longer _id, failing the whole bulk request


def doc_id(project_id: int, event_id: str) -> str:
    """The `_id` of an event: one per project and id, so a replay is a 409, not a copy. An
    event id may be 128 characters of up to 4 bytes each (docs/api.md); the few whose `_id`
    would pass 512 bytes get a digest of the id instead (the `id` field keeps it whole)."""
    key = f"{project_id}:{event_id}"
    if len(event_id) <= 125 or len(key.encode()) <= _ID_MAX_BYTES:  # 125 * 4 + 11 digits and ':' fit
        return key
    return f"{project_id}:#sha256:{hashlib.sha256(event_id.encode()).hexdigest()}"


def attr_kv(key: str, value: Any) -> str:
    return key + "=" + orjson.dumps(value).decode()


def to_doc(project_id: int, ev: dict[str, Any], with_num: bool = True) -> dict[str, Any]:
    ts = ev["ts"]
    doc: dict[str, Any] = {
        "@timestamp": ts // 1000,
        "project_id": project_id,
        "id": ev["id"],
        "ts": ts,
        "received_at": ev["received_at"],
        "kind": ev["kind"],
        "level": ev["level"],
    }
    g = ev.get
    for f in _STRINGS:
        v = g(f)
        if v is not None:
            doc[f] = v
    err = g("error")
    if err:
        doc["error"] = err
    attrs = g("attrs")
    if attrs:
        doc["attrs"] = attrs
        doc["attrs_keys"] = list(attrs)
        kv = []
        num: dict[str, float] = {}
        for k, v in attrs.items():
            # attr_kv, with its two common cases written out: this loop runs once per attribute
            # of every stored event, and a call to orjson per value was ~20% of to_doc.
            t = type(v)
            if t is str and v.isprintable() and '"' not in v and "\\" not in v:
                kv.append(f'{k}="{v}"')  # nothing JSON would escape
                continue
            if v is None:
                continue
            kv.append(f"{k}={v}" if t is int else attr_kv(k, v))
            if with_num and (t is int or t is float) and k.strip():
                num[k if "." not in k and "%" not in k else num_field(k)[10:]] = v
        if kv:
            doc["attrs_kv"] = kv
        if num:
            doc["attrs_num"] = num
    return doc


def from_doc(src: dict[str, Any]) -> dict[str, Any]:
    ev = {f: src.get(f) for f in EVENT_FIELDS}
    ev["attrs"] = src.get("attrs") or {}
    return ev
