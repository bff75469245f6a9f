"""The documents the hub stores are the same as the code before the typed line decoder stored.

tests/data/stored_documents.json.zst is the frozen output of tests/ingest/stored_docs.py run
on the code before `events.decode_line` (and the writer's `bulk_line`): per-line problems, error
groups, each event's OpenSearch bulk line (`_source` bytes as sent) and SQLite row, for loghub
samples sent as the agent and as apps send them, tests/factories.py's events and edge cases.
Any field changed, dropped or added, any problem worded differently, fails here.
"""

from __future__ import annotations

from typing import Any

from obshub.errors import FieldError
from obshub.events import DEFAULT_LIMITS, decode_line
from tests.ingest.stored_docs import RECEIVED_AT, lines, load_expected, stored


def _first_difference(old: list[Any], new: list[Any]) -> str:
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        if a != b:
            return f"entry {i}:\n  before: {str(a)[:600]}\n  now:    {str(b)[:600]}"
    return f"{len(old)} entries before, {len(new)} now"


def test_stored_documents_equal_the_code_before() -> None:
    expected, now = load_expected(), stored(lines())
    for part in ("problems", "groups", "bulk", "rows"):
        assert now[part] == expected[part], f"{part} differ, {_first_difference(expected[part], now[part])}"


def test_the_typed_pass_takes_the_agent_lines() -> None:
    """The comparison above covers the typed pass: most of its lines go that way (the agent's
    form, factories' events), the others the general way (aliases, extra keys, nested attrs)."""
    taken = [line for line in lines() if line.strip() and _typed(line)]
    assert 600 <= len(taken) <= 900, len(taken)


def _typed(line: bytes) -> bool:
    try:
        return decode_line(line, RECEIVED_AT, DEFAULT_LIMITS) is not None
    except FieldError:  # a line the typed pass read and refused
        return True
