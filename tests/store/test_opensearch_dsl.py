"""Query-language -> DSL compiler, without a node: the shapes the semantics rest on.
(The answers themselves are pinned against SQLite by tests/contract on a live node.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obshub.errors import QueryError
from obshub.store.opensearch.dsl import compile_query, filters
from obshub.store.opensearch.mappings import attr_kv, num_field, to_doc
from obshub.store.querylang import parse


def c(q: str) -> dict:
    node = parse(q)
    assert node is not None
    return compile_query(node)


def test_word_matches_message_or_any_id_field() -> None:
    should = c("abc123")["bool"]["should"]
    assert should[0] == {"match_phrase": {"message": "abc123"}}
    assert {"term": {"request_id": "abc123"}} in should and {"term": {"id": "abc123"}} in should


def test_phrase_and_prefix_match_message_only() -> None:
    assert c('"timed out"') == {"match_phrase": {"message": "timed out"}}
    assert c("tim*")["match_phrase_prefix"]["message"]["query"] == "tim"


def test_punctuation_only_word_matches_no_message() -> None:
    assert c("--")["bool"]["should"][0] == {"bool": {"must_not": {"match_all": {}}}}


def test_levels_compare_by_severity() -> None:
    assert c("level:>=warning") == {"terms": {"level": ["warning", "error", "critical"]}}
    assert c("level:warn") == {"term": {"level": "warning"}}
    with pytest.raises(QueryError):
        c("level:loud")


def test_ts_takes_rfc3339_and_rejects_prefix() -> None:
    assert c("ts:>=2026-01-01T00:00:00Z") == {"range": {"ts": {"gte": 1_767_225_600_000_000}}}
    with pytest.raises(QueryError):
        c("ts:2026*")


def test_not_is_must_not_so_missing_fields_match() -> None:
    assert c("-host:web-3") == {"bool": {"must_not": [{"term": {"host": "web-3"}}]}}


def test_attr_equality_is_typed_json() -> None:
    assert c('plan:"7"') == {"term": {"attrs_kv": 'plan="7"'}}
    eq = c("plan:7")["bool"]["should"]
    assert {"terms": {"attrs_kv": ['plan="7"', "plan=7"]}} in eq
    assert {"term": {"attrs_num.plan": 7.0}} in eq
    assert c("ok:true") == {"terms": {"attrs_kv": ['ok="true"', "ok=true"]}}


def test_attr_range_exists_and_prefix() -> None:
    assert c("duration_ms:>500") == {"range": {"attrs_num.duration_ms": {"gt": 500.0}}}
    assert c("attrs.a.b:*") == {"term": {"attrs_keys": "a.b"}}
    assert c("path:/api*") == {"prefix": {"attrs_kv": 'path="/api'}}
    with pytest.raises(QueryError):
        c("duration_ms:>1e999")


def test_dotted_numeric_keys_cannot_collide_with_their_parent() -> None:
    assert num_field("a") == "attrs_num.a"
    assert num_field("a.b") == "attrs_num.a%2Eb"
    assert num_field("50%.p") == "attrs_num.50%25%2Ep"


def test_document_shape() -> None:
    ev = {
        "id": "x",
        "ts": 1_700_000_000_123_456,
        "received_at": 1,
        "kind": "log",
        "level": "info",
        "message": "hi",
        "host": None,
        "error": None,
        "group_id": None,
        "attrs": {"n": 1, "a.b": 2.5, "s": "v", "none": None, "flag": True},
    }
    doc = to_doc(7, ev)
    assert doc["@timestamp"] == 1_700_000_000_123 and doc["project_id"] == 7 and "host" not in doc
    assert doc["attrs_keys"] == ["n", "a.b", "s", "none", "flag"]
    assert doc["attrs_kv"] == ["n=1", "a.b=2.5", 's="v"', "flag=true"]
    assert doc["attrs_num"] == {"n": 1, "a%2Eb": 2.5}  # booleans are not numbers
    assert attr_kv("k", [1, "x"]) == 'k=[1,"x"]'


def test_filters_scope_project_and_half_open_time_range() -> None:
    f = filters(3, None, 10, 20)["bool"]["filter"]
    assert f == [{"term": {"project_id": 3}}, {"range": {"ts": {"gte": 10, "lt": 20}}}]


@given(
    st.dictionaries(
        st.text(max_size=4),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**63), 2**64 - 1),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(),
            st.text(alphabet='a"\\\x00\x1f\x7f\u2028é😀 '),
            st.lists(st.one_of(st.text(max_size=3), st.integers(-(2**63), 2**63))),
        ),
        max_size=6,
    )
)
@settings(max_examples=400)
def test_attrs_kv_written_out_equals_attr_kv(attrs: dict) -> None:
    # to_doc spells out attr_kv for plain strings and ints (the hot path); it must not differ
    ev = {"id": "x", "ts": 1_700_000_000_123_456, "received_at": 1, "kind": "log", "level": "info", "attrs": attrs}
    doc = to_doc(1, ev)
    assert doc.get("attrs_kv", []) == [attr_kv(k, v) for k, v in attrs.items() if v is not None]
