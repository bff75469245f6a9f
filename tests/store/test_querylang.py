"""The query language: examples pin the AST; hypothesis checks print/parse stability and that
arbitrary input never raises anything but QuerySyntaxError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obshub.store.querylang import And, Field, Not, Or, QuerySyntaxError, Text, parse, to_string


def test_example_from_the_design() -> None:
    q = 'level:error service:api "timed out" user_id:42 -host:web-3 duration_ms:>500 attrs.plan:pro'
    assert parse(q) == And(
        (
            Field("level", "=", "error"),
            Field("service", "=", "api"),
            Text("timed out", phrase=True),
            Field("user_id", "=", "42"),
            Not(Field("host", "=", "web-3")),
            Field("attrs.duration_ms", ">", "500"),
            Field("attrs.plan", "=", "pro"),
        )
    )


def test_precedence_and_grouping() -> None:
    assert parse("a b OR c") == Or((And((Text("a"), Text("b"))), Text("c")))
    assert parse("a (b OR c)") == And((Text("a"), Or((Text("b"), Text("c")))))
    assert parse("a AND b") == parse("a b")
    assert parse("NOT a") == parse("-a") == Not(Text("a"))
    assert parse("-(a OR b)") == Not(Or((Text("a"), Text("b"))))


def test_values() -> None:
    assert parse('host:"web 1"') == Field("host", "=", "web 1", quoted=True)
    assert parse("host:web-*") == Field("host", "prefix", "web-")
    assert parse('host:"web-*"') == Field("host", "=", "web-*", quoted=True)
    assert parse("trace_id:*") == Field("trace_id", "exists")
    assert parse("url:http://x/y?z=1") == Field("attrs.url", "=", "http://x/y?z=1")
    assert parse("a:>=1.5") == Field("attrs.a", ">=", "1.5")
    assert parse(r'"say \"hi\""') == Text('say "hi"', phrase=True)
    assert parse("") is None and parse("   ") is None


@pytest.mark.parametrize(
    ("q", "column"),
    [
        ("(", 1),
        ("a (b", 3),
        ("()", 1),
        ("a)", 2),
        ("a OR", 5),
        ("OR a", 1),
        ("a AND", 6),
        ('"abc', 1),
        ("host:", 6),
        ("x:>abc", 1),
        ("*", 1),
        ('a "', 3),
        ("attrs.:x", 1),
    ],
)
def test_syntax_errors_point_at_a_column(q: str, column: int) -> None:
    with pytest.raises(QuerySyntaxError) as e:
        parse(q)
    assert e.value.column == column


_alphabet = st.sampled_from([*'abcAB01 :-()"*<>=.\\_@/', "OR", "AND", "NOT", "host", "level", "attrs.", " OR ", "é"])


@settings(max_examples=500, deadline=None)
@given(st.lists(_alphabet, max_size=25).map("".join))
def test_garbage_only_ever_raises_syntax_errors_and_round_trips(q: str) -> None:
    try:
        node = parse(q)
    except QuerySyntaxError as e:
        assert 1 <= e.column <= len(q) + 1
        return
    text = to_string(node)
    assert parse(text) == node
    assert to_string(parse(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_unicode_only_raises_syntax_errors(q: str) -> None:
    try:
        node = parse(q)
    except QuerySyntaxError:
        return
    assert parse(to_string(node)) == node
