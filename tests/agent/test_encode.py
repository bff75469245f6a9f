"""Encoder details: events the hub would reject are never built by the agent itself."""

from __future__ import annotations

from obshub_agent.config import InputConfig
from obshub_agent.parse import FileEncoder, TimestampParser
from obshub_agent.parse.encode import loads


def _one(inp: InputConfig, line: bytes) -> dict:
    enc = FileEncoder(inp, host="h", uid="u", path="/var/log/a.log", ts=TimestampParser(None, "UTC"))
    out: list[bytes] = []
    enc.feed(line + b"\n", 0, out)
    assert len(out) == 1
    return loads(out[0])


def test_unknown_level_kept_in_attrs_and_apache_trace_levels() -> None:
    rx = InputConfig(paths=("x",), format="regex", regex=r"^(?P<level>\S+) (?P<message>.*)$")
    ev = _one(rx, b"LOUD something")
    assert "level" not in ev and ev["attrs"]["level_raw"] == "LOUD"
    ap = InputConfig(paths=("x",), format="apache_error")
    ev = _one(ap, b"[Wed Oct 11 14:32:52.123456 2000] [core:trace3] [pid 35708:tid 4328636416] [client 1.2.3.4:5] hi")
    assert ev["level"] == "trace" and ev["attrs"]["module"] == "core" and ev["attrs"]["client"] == "1.2.3.4:5"
    assert ev["attrs"]["pid"] == "35708" and ev["message"] == "[client 1.2.3.4:5] hi"


def test_long_message_and_attr_values_are_cut_to_hub_limits() -> None:
    rx = InputConfig(paths=("x",), format="regex", regex=r"^(?P<blob>\S+) (?P<message>.*)$")
    ev = _one(rx, b"b" * 20000 + b" " + "é".encode() * 200_000)
    assert len(ev["message"].encode()) <= 256 * 1024 and len(ev["attrs"]["blob"]) <= 16 * 1024
    assert ev["attrs"]["truncated"] is True


def test_agent_keys_never_clash_with_the_lines_keys() -> None:
    js = InputConfig(paths=("x",), format="json", labels={"env": "prod", "team": "a"})
    ev = _one(js, b'{"message": "m", "file": "report.pdf", "team": "b", "attrs": {"offset": 3}}')
    assert ev["file"] == "report.pdf" and ev["team"] == "b"
    assert ev["attrs"] == {"offset": 3, "agent.file": "/var/log/a.log", "agent.offset": 0, "env": "prod"}
    rx = InputConfig(paths=("x",), format="regex", regex=r"^(?P<file>\S+) (?P<message>.*)$")
    ev = _one(rx, b"x.c compiled")
    assert ev["attrs"]["file"] == "x.c" and ev["attrs"]["agent.file"] == "/var/log/a.log"


def test_json_fast_path_output_equals_full_encoding() -> None:
    js = InputConfig(paths=("x",), format="json", labels={"env": "prod"})
    ev = _one(js, b'{"timestamp": "2026-01-01T00:00:00Z", "message": "m\\n\\u00e9", "n": [1, 2]}  ')
    assert ev == {
        "timestamp": "2026-01-01T00:00:00Z",
        "message": "m\né",
        "n": [1, 2],
        "id": "u-0",
        "host": "h",
        "service": "a",
        "attrs": {"file": "/var/log/a.log", "offset": 0, "env": "prod"},
    }
    ev = _one(js, b'{"message": "no time", "host": "other", "id": 7}')
    assert ev["host"] == "other" and ev["id"] == "u-0" and ev["attrs"]["id"] == 7 and isinstance(ev["ts"], float)
    ev = _one(js, b"[1, 2]")
    assert ev["message"] == "[1, 2]" and ev["attrs"]["parse_error"] is True
