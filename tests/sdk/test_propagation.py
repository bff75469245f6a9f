"""W3C traceparent / X-Request-ID / baggage parsing and outgoing headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import obshub_sdk
from obshub_sdk.propagation import begin_hop, parse_traceparent, valid_request_id

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-01", (TRACE, PARENT, "01")),
        (f"00-{TRACE}-{PARENT}-00", (TRACE, PARENT, "00")),
        (f" 00-{TRACE}-{PARENT}-01\t", (TRACE, PARENT, "01")),  # OWS around the value
        (f"01-{TRACE}-{PARENT}-01-future-field", (TRACE, PARENT, "01")),  # newer version
        (f"00-{TRACE}-{PARENT}-01-extra", None),  # version 00 has exactly 4 fields
        (f"ff-{TRACE}-{PARENT}-01", None),  # version ff forbidden
        (f"00-{'0' * 32}-{PARENT}-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
        (f"00-{TRACE.upper()}-{PARENT}-01", None),  # uppercase hex is invalid
        (f"00-{TRACE[:-1]}-{PARENT}-01", None),
        ("garbage", None),
        ("", None),
        (None, None),
        ("00-" + "a" * 600, None),
    ],
)
def test_parse_traceparent(header: str | None, expected: tuple[str, str, str] | None) -> None:
    assert parse_traceparent(header) == expected


@given(st.text(max_size=200))
def test_parse_traceparent_never_raises(text: str) -> None:
    result = parse_traceparent(text)
    assert result is None or len(result[0]) == 32


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc-123", True),
        ("A.b_c:d-9", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("has space", False),
        ("semi;colon", False),
        ("<script>", False),
        ("ünï", False),
        ("line\nbreak", False),
    ],
)
def test_request_id_bounds(value: str, ok: bool) -> None:
    assert (valid_request_id(value) == value) is ok


@given(st.text(max_size=300))
def test_begin_hop_always_yields_valid_ids(text: str) -> None:
    fields, _, _ = begin_hop(text, text, text, text, accept_baggage=True)
    assert valid_request_id(fields["request_id"])
    assert parse_traceparent(f"00-{fields['trace_id']}-{fields['span_id']}-01") is not None
    assert len(fields.get("user_id", "")) <= 128


def test_hop_continues_trace_with_new_span() -> None:
    fields, state, parent = begin_hop(f"00-{TRACE}-{PARENT}-00", "rid-1", "vendor=x")
    assert fields["trace_id"] == TRACE and fields["request_id"] == "rid-1"
    assert fields["span_id"] != PARENT and len(fields["span_id"]) == 16
    assert parent == PARENT and state.flags == "00" and state.tracestate == "vendor=x"


def test_tracestate_dropped_without_valid_traceparent() -> None:
    fields, state, parent = begin_hop("bogus", None, "vendor=x")
    assert parent is None and state.tracestate is None
    assert len(fields["trace_id"]) == 32 and len(fields["request_id"]) == 32


def test_baggage_is_opt_in() -> None:
    header = "obshub.user_id=alice%40example.com,obshub.session_id=s1;prop=1,other=keep%20me"
    fields, state, _ = begin_hop(None, None, None, header, accept_baggage=False)
    assert "user_id" not in fields
    fields, state, _ = begin_hop(None, None, None, header, accept_baggage=True)
    assert fields["user_id"] == "alice@example.com" and fields["session_id"] == "s1"
    assert state.baggage == "other=keep%20me"


def test_outgoing_headers_outside_a_request_are_empty() -> None:
    assert obshub_sdk.outgoing_headers() == {}


def test_outgoing_headers_with_and_without_baggage() -> None:
    with obshub_sdk.start_trace(request_id="r-1") as fields:
        obshub_sdk.bind_user("a b", "s,1")
        plain = obshub_sdk.outgoing_headers()
        with_baggage = obshub_sdk.outgoing_headers(baggage=True)
    assert plain == {
        "traceparent": f"00-{fields['trace_id']}-{fields['span_id']}-01",
        "x-request-id": "r-1",
    }
    assert with_baggage["baggage"] == "obshub.user_id=a%20b,obshub.session_id=s%2C1"
    # and the receiving side decodes what the sending side encoded
    received, _, _ = begin_hop(None, None, None, with_baggage["baggage"], accept_baggage=True)
    assert (received["user_id"], received["session_id"]) == ("a b", "s,1")
    obshub_sdk.bind_user(None)
