"""obshub.events: the schema's aliases, levels, timestamps and bounds, function by function."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obshub.errors import FieldError
from obshub.events import Limits, format_ts, normalize, normalize_level, parse_ts, to_public
from obshub.store.opensearch.mappings import EVENT_FIELDS

NOW = 1_795_000_000_000_000


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("DEBUG", "debug"),
        ("trace", "debug"),
        ("FINEST", "debug"),
        ("Information", "info"),
        ("notice", "info"),
        ("WARN", "warning"),
        ("warning", "warning"),
        ("err", "error"),
        ("SEVERE", "error"),
        ("fatal", "critical"),
        ("emerg", "critical"),
        ("crit", "critical"),
        ("alert", "critical"),
        (0, "critical"),
        (3, "error"),
        (4, "warning"),
        (5, "info"),
        (6, "info"),
        (7, "debug"),
        ("7", "debug"),
        (10, "debug"),
        (20, "info"),
        (30, "warning"),
        (40, "error"),
        (50, "critical"),
    ],
)
def test_levels_normalize(raw: object, level: str) -> None:
    assert normalize_level(raw) == level


@pytest.mark.parametrize("raw", ["loud", 8, 99, True, None, 3.5, ""])
def test_unknown_levels_are_errors(raw: object) -> None:
    with pytest.raises(FieldError) as e:
        normalize_level(raw)
    assert e.value.field == "level"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-23T19:14:02.123456Z", "2026-11-23T19:14:02.123456Z"),
        ("2026-11-23T19:14:02.123456789Z", "2026-11-23T19:14:02.123456Z"),  # ns truncated to µs
        ("2026-11-23T21:14:02+02:00", "2026-11-23T19:14:02.000000Z"),
        ("2026-11-23 19:14:02,5", "2026-11-23T19:14:02.500000Z"),  # python logging's comma, no offset = UTC
        ("2026-11-23t19:14:02z", "2026-11-23T19:14:02.000000Z"),
        (1795461242, "2026-11-23T19:14:02.000000Z"),  # s
        (1795461242.25, "2026-11-23T19:14:02.250000Z"),
        (1795461242250, "2026-11-23T19:14:02.250000Z"),  # ms
        (1795461242250001, "2026-11-23T19:14:02.250001Z"),  # µs
        (1795461242250001999, "2026-11-23T19:14:02.250001Z"),  # ns
        ("1795461242.5", "2026-11-23T19:14:02.500000Z"),
    ],
)
def test_timestamps(raw: object, expected: str) -> None:
    assert format_ts(parse_ts(raw)) == expected


@pytest.mark.parametrize(
    "raw", ["yesterday", "", "2026-13-45T00:00:00Z", True, [], {}, float("nan"), -5, "1800-01-01T00:00:00Z", 10**30]
)
def test_bad_timestamps(raw: object) -> None:
    with pytest.raises(FieldError) as e:
        parse_ts(raw)
    assert e.value.field == "ts"


def test_defaults_and_generated_id() -> None:
    ev = normalize({"message": "hi"}, NOW)
    assert ev["ts"] == NOW == ev["received_at"]
    assert ev["kind"] == "log" and ev["level"] == "info"
    assert len(ev["id"]) == 32 and ev["id"] != normalize({"message": "hi"}, NOW)["id"]
    assert ev["attrs"] == {}


def test_unknown_keys_move_to_attrs_flattened() -> None:
    ev = normalize(
        {
            "message": "m",
            "http": {"path": "/x", "status": 200},
            "tags": ["a", "b"],
            "attrs": {"plan": "pro", "cart": {"items": 3}},
        },
        NOW,
    )
    assert ev["attrs"] == {"http.path": "/x", "http.status": 200, "tags": ["a", "b"], "plan": "pro", "cart.items": 3}


def test_canonical_key_wins_and_alias_is_kept() -> None:
    ev = normalize({"message": "canonical", "msg": "alias", "event": "structlog"}, NOW)
    assert ev["message"] == "canonical"
    assert ev["attrs"] == {"msg": "alias", "event": "structlog"}


def test_key_both_top_level_and_in_attrs_is_an_error() -> None:
    with pytest.raises(FieldError, match="both at the top level and inside attrs"):
        normalize({"plan": "a", "attrs": {"plan": "b"}}, NOW)


def test_correlation_keys_accept_numbers_as_text() -> None:
    ev = normalize({"user_id": 42, "request_id": "r", "session_id": 7.5}, NOW)
    assert (ev["user_id"], ev["session_id"]) == ("42", "7.5")
    with pytest.raises(FieldError, match="user_id"):
        normalize({"user_id": {"id": 1}}, NOW)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"id": ""}, "id"),
        ({"id": "x" * 129}, "id"),
        ({"id": 5}, "id"),
        ({"kind": "metric"}, "kind"),
        ({"kind": "event"}, "name"),
        ({"kind": "error"}, "error"),
        ({"attrs": [1]}, "attrs"),
        ({"error": 5}, "error"),
        ({"error": {"stack": 5}}, "error.stack"),
        ({"error": {"stack": [1]}}, "error.stack[0]"),
        ({"message": ["a"]}, "message"),
        ({"attrs": {"x": [{"a": 1}]}}, "attrs.x"),
    ],
)
def test_invalid_fields_are_named(raw: dict[str, object], field: str) -> None:
    with pytest.raises(FieldError) as e:
        normalize(raw, NOW)
    assert e.value.field == field


def test_limits_each_reported() -> None:
    lim = Limits(max_attr_keys=3, max_attr_depth=2, max_value_bytes=10, max_message_bytes=20, max_key_bytes=8)
    with pytest.raises(FieldError, match="4 keys"):
        normalize({"attrs": {"a": 1, "b": 2, "c": 3, "d": 4}}, NOW, lim)
    with pytest.raises(FieldError, match="nested deeper"):
        normalize({"attrs": {"a": {"b": {"c": 1}}}}, NOW, lim)
    with pytest.raises(FieldError, match="11 bytes"):
        normalize({"attrs": {"a": "x" * 11}}, NOW, lim)
    with pytest.raises(FieldError, match="message"):
        normalize({"message": "é" * 11}, NOW, lim)  # 22 bytes in UTF-8: bytes, not characters
    with pytest.raises(FieldError, match="key longer"):
        normalize({"attrs": {"abcdefghi": 1}}, NOW, lim)
    assert normalize({"attrs": {"a": {"b": "x" * 10}}}, NOW, lim)["attrs"] == {"a.b": "x" * 10}


def test_error_implies_kind_and_message() -> None:
    ev = normalize({"error": {"type": "ValueError", "value": "bad"}}, NOW)
    assert (ev["kind"], ev["level"], ev["message"]) == ("error", "error", "ValueError: bad")
    ev = normalize({"kind": "event", "message": "signup"}, NOW)
    assert ev["name"] == "signup"


def test_to_public_renders_times_and_drops_empties() -> None:
    pub = to_public(normalize({"id": "x", "message": "m", "ts": NOW}, NOW))
    assert pub == {
        "id": "x",
        "message": "m",
        "ts": format_ts(NOW),
        "received_at": format_ts(NOW),
        "kind": "log",
        "level": "info",
    }


@given(st.integers(0, 7_258_118_400_000_000))
@settings(max_examples=300)
def test_the_sdk_form_parses_the_same_from_the_seconds_cache(us: int) -> None:
    text = format_ts(us)  # "YYYY-MM-DDTHH:MM:SS.ffffffZ", the form the SDKs write
    first = parse_ts(text)  # the full path, which fills the cache
    neighbour = text[:20] + f"{(us + 1) % 1_000_000:06d}Z"  # same second, other fraction: from the cache
    assert first == us
    assert parse_ts(neighbour) == us - us % 1_000_000 + (us + 1) % 1_000_000
    assert parse_ts(text.lower()) == us  # still RFC 3339


@pytest.mark.parametrize("tail", ["12345xZ", "1234٣5Z"])
def test_a_cached_second_does_not_admit_a_bad_fraction(tail: str) -> None:
    parse_ts("2026-11-23T19:14:02.000000Z")  # caches the second
    with pytest.raises(FieldError):
        parse_ts("2026-11-23T19:14:02." + tail)


def test_a_cached_second_leaves_other_forms_to_the_full_path() -> None:
    parse_ts("2026-11-23T19:14:02.000000Z")  # caches the second
    assert parse_ts("2026-11-23T19:14:02.123456z ") == parse_ts("2026-11-23T19:14:02.123456Z")


def test_explicit_nulls_read_as_absent_and_fields_keep_their_order() -> None:
    nulls = normalize({"id": None, "ts": None, "kind": None, "level": None, "attrs": None, "fingerprint": None}, NOW)
    assert (nulls["ts"], nulls["kind"], nulls["level"], nulls["attrs"], len(nulls["id"])) == (
        NOW,
        "log",
        "info",
        {},
        32,
    )
    assert "fingerprint" not in nulls
    plain = normalize({"id": "i", "attrs": {"a": 1}, "message": "m", "fingerprint": ["x"], "ts": NOW}, NOW)
    aliased = normalize({"id": "i", "attrs": {"a": 1}, "msg": "m", "fingerprint": ["x"], "time": NOW}, NOW)
    assert list(plain) == list(aliased) and list(plain)[-2:] == ["fingerprint", "attrs"]
    assert set(plain) == {*EVENT_FIELDS, "fingerprint"}
    assert plain == aliased
    err = normalize({"error": "boom", "level": None, "kind": None}, NOW)
    assert (err["kind"], err["level"]) == ("error", "error")
