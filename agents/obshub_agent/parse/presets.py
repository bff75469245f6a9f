"""Line parsers: one text line -> a dict of event fields, or None when the line does not match.

A parser is a callable `(line: str) -> dict | None` built once per input. Presets are plain
regexes with named groups, the same mechanism as `format = "regex"`, so a user regex behaves
exactly like a preset: `ts` is parsed into the event time, `level` and `message` map to the
event's fields, known top-level names (`logger`, `request_id`, ...) stay top level, every other
group lands in `attrs`. A line a preset cannot parse is still shipped, as raw `message` with
`attrs.parse_error = true`: never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .timestamps import TimestampParser

__all__ = ["KNOWN_LEVELS", "PRESETS", "LineParser", "build_line_parser", "header_pattern"]

LineParser = Callable[[str], "dict[str, Any] | None"]

# Fields that stay at the top level of the event (docs/api.md, "Ingest"); other groups -> attrs.
_TOP = frozenset(
    {
        "message",
        "level",
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
        "kind",
    }
)

_SYSLOG_SEVERITY = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
# Level words the hub accepts (docs/api.md, "Ingest": names, aliases, syslog 0-7, python 10-50). The hub
# rejects a line with any other level, so an unknown word read from a file is kept in
# attrs.level_raw instead of losing the line. Apache 2.4's trace1..trace8 map to "trace".
KNOWN_LEVELS = frozenset(
    (
        "debug",
        "trace",
        "verbose",
        "fine",
        "finer",
        "finest",
        "notset",
        "d",
        "v",
        "dbg",
        "info",
        "information",
        "informational",
        "notice",
        "config",
        "i",
        "inf",
        "warning",
        "warn",
        "w",
        "wrn",
        "error",
        "err",
        "severe",
        "e",
        "exception",
        "critical",
        "crit",
        "fatal",
        "emerg",
        "emergency",
        "alert",
        "panic",
        "f",
        "a",
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "10",
        "20",
        "30",
        "40",
        "50",
    )
)

# Every preset is linear in the line (tests/security/test_parsers.py times each on adversarial
# lines): a log line is whatever reached the file, e.g. a client's User-Agent. The syslog program
# name is taken whole (atomic group): giving characters of it back to the `(...)` that may follow
# re-scanned the rest of the line from every `(` in it (quadratic).
PRESETS: dict[str, tuple[str, ...]] = {
    # [Sun Dec 04 04:47:44 2005] [notice] msg            (Apache 2.2)
    # [Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328] [client 1.2.3.4:5] msg  (2.4)
    "apache_error": (
        r"^\[(?P<ts>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]?\d \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\] "
        r"\[(?:(?P<module>[^:\]]+):)?(?P<level>[a-z]+\d?)\]"
        r"(?: \[pid (?P<pid>\d+)(?::tid (?P<tid>\d+))?\])?"
        r"(?: (?P<message>(?:\[client (?P<client>[^\]]+)\] )?.*))?$",
    ),
    # <34>Oct 11 22:14:15 host app[pid]: msg   (RFC 3164, PRI optional as written by rsyslog to files)
    # 2024-01-02T03:04:05.678+00:00 host app[pid]: msg   (rsyslog high-precision file format)
    # <34>1 2003-10-11T22:14:15.003Z host app procid msgid [sd] msg   (RFC 5424)
    "syslog": (
        r"^(?:<(?P<pri>\d{1,3})>)?(?P<ts>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) (?P<hostname>\S+) +"
        r"(?:(?P<logger>[^\[:\s][^\[:]*?(?=\[[^\]]*\](?: \([^)]*\))?: )"
        r"|(?:-- )?(?>[^\s\[:]+)(?:\([^)\s]*\))?(?: \d[\w.]*)?)"
        r"(?:\[(?P<pid>[^\]]*)\])?(?: \((?P<address>[^)]*)\))?: ?)?"
        r"(?P<message>.*)$",
        r"^(?:<(?P<pri>\d{1,3})>)?(?P<ts>\d{4}-\d{2}-\d{2}T\S+) (?P<hostname>\S+) "
        r"(?:(?P<logger>[^\s\[:]+)(?:\[(?P<pid>[^\]]*)\])?: ?)?(?P<message>.*)$",
        r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<hostname>\S+) (?P<logger>\S+) (?P<pid>\S+) (?P<msgid>\S+) "
        r"(?P<sd>-|(?:\[[^\]]*\])+) ?(?P<message>.*)$",
    ),
    # 2015-07-29 17:41:44,747 - INFO  [thread] - msg            (zookeeper's log4j layout)
    # 2024-01-02 03:04:05,678 INFO  com.example.Foo - msg       (%d %p %c - %m)
    # 2024-01-02 03:04:05,678 [main] ERROR com.example.Foo - msg (%d [%t] %p %c - %m)
    "log4j": (
        r"^(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[,.]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)\s+(?:-\s+)?"
        r"(?:\[(?P<thread>[^\]]*)\]\s+)?(?P<level>TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|SEVERE)\s+"
        r"(?:\[(?P<thread2>.*?)\]\s+)?(?:(?P<logger>[^\s\[\]]+)\s+)?-\s+(?P<message>.*)$",
    ),
    # logging.basicConfig() default: LEVEL:logger:message
    # '%(asctime)s %(levelname)s %(name)s %(message)s' and '%(asctime)s - %(name)s - %(levelname)s - %(message)s'
    "python": (
        r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):(?P<logger>[^:]*):(?P<message>.*)$",
        r"^(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[,.]\d{1,6})?)\s+(?:-\s+)?"
        r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(?:-\s+)?(?P<logger>\S+)\s+(?:-\s+)?(?P<message>.*)$",
        r"^(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[,.]\d{1,6})?)\s+-\s+(?P<logger>\S+)\s+-\s+"
        r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+-\s+(?P<message>.*)$",
    ),
}


def header_pattern(fmt: str, regex: str | None = None) -> re.Pattern[str] | None:
    """The pattern a line must match to start a new event, for automatic multiline."""
    pats = PRESETS.get(fmt) or ((regex,) if regex else None)
    if not pats:
        return None
    return re.compile("|".join(f"(?:{_strip_names(p)})" for p in pats))


def _strip_names(p: str) -> str:
    return re.sub(r"\(\?P<\w+>", "(?:", p)


def build_line_parser(fmt: str, regex: str | None, ts: TimestampParser) -> LineParser | None:
    """None for `json` and `text` (handled inline by the encoder: they are the hot paths)."""
    if fmt in ("json", "text"):
        return None
    pats = [re.compile(p) for p in PRESETS.get(fmt, (regex or "",))]
    syslog = fmt == "syslog"

    def parse(line: str) -> dict[str, Any] | None:
        for pat in pats:
            m = pat.match(line)
            if m is not None:
                break
        else:
            return None
        out: dict[str, Any] = {}
        attrs: dict[str, Any] = {}
        for k, v in m.groupdict().items():
            if v is None:
                continue
            if k == "ts":
                t = ts(v)
                if t is None:
                    attrs["ts_raw"] = v
                else:
                    out["ts"] = t
            elif k == "message":
                out["message"] = v.strip()
            elif k in ("thread2",):
                attrs["thread"] = v
            elif k == "pri" and syslog:
                pri = int(v)
                out.setdefault("level", _SYSLOG_SEVERITY[pri & 7])
                attrs["facility"] = pri >> 3
            elif k == "level":
                lv = v.strip().lower()
                if lv not in KNOWN_LEVELS:
                    lv = lv.rstrip("0123456789")
                if lv in KNOWN_LEVELS:
                    out["level"] = lv
                else:
                    attrs["level_raw"] = v
            elif k in _TOP:
                out[k] = v
            else:
                attrs[k] = v
        out.setdefault("message", "")
        if attrs:
            out["attrs"] = attrs
        return out

    return parse
