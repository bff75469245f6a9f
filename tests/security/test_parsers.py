"""ReDoS: every parser of the hub and the agent is linear in its input. Each is fed adversarial
text (one long line, runs of what its patterns are made of, repeated near-matches, 60 KB) and
must answer within a bound that is generous on a shared machine (the linear parsers take ms)
and that the backtracking patterns broke by far (the Python traceback pattern: 85 s at 60 KB).
The v1 masks were rewritten for speed: they must keep giving the exact output of `re.sub`."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obshub.digest import Scrubber, digest
from obshub.digest import traceback as traceback_text
from obshub.digest.grouping import v1, v2
from obshub.digest.traceback import parse_traceback
from obshub.errors import FieldError
from obshub.events import normalize, parse_ts
from obshub_agent.parse.encode import _EXC_LINE
from obshub_agent.parse.presets import PRESETS, build_line_parser, header_pattern
from obshub_agent.parse.timestamps import TimestampParser

BOUND_S = 1.0  # per call, for 60 KB; the linear code needs a few ms
N = 60_000
TB = "Traceback (most recent call last):\n"


def _bounded(fn: Callable[..., Any], arg: Any, what: str) -> Any:
    started = time.perf_counter()
    out = fn(arg)
    took = time.perf_counter() - started
    assert took < BOUND_S, f"{what}: {took:.2f} s"
    return out


# Runs of what the patterns are made of, and repeated near-matches, each ~60 KB on one line.
LONG_LINES = {
    "word": "A" * N + "!",
    "lower": "a" * N + "!",
    "dotted": "a." * (N // 2) + "!",
    "Dotted": "Ab." * (N // 3) + "!",
    "colon": "A:" * (N // 2),
    "slashes": "a/" * (N // 2),
    "parens": "(" * N,
    "brackets": "[" * N,
    "closing": "] " * (N // 2),
    "spaces": "a" + " " * N + "!",
    "digits": "1" * N + "x",
    "hex": "0x" + "a" * N + "g",
    "at": "a" * N + "@",
    "ats": "a@" * (N // 2),
    "scheme": "a.b-c+" * (N // 6) + "://",
    "schemes": "a://" * (N // 4),
    "dates": "2024-01-02 " * (N // 11),
    "ips": "1.2.3." * (N // 6),
    "equals": "password=" * (N // 9),
    "quotes": '"a": "' * (N // 6),
    "bearer": "Bearer " * (N // 7),
    "userinfo": "x://a:b" * (N // 7),
}


@pytest.mark.parametrize("name", sorted(LONG_LINES))
def test_traceback_parser_is_linear(name: str) -> None:
    line = LONG_LINES[name]
    for text in (
        TB + line,  # the reported case: 4.6 s at 14 KB, 85 s at 60 KB
        TB + '  File "x.py", line 1, in f\n' + line + "\n" + line,
        "Exception in thread main\n\tat " + line,
        "java.lang.RuntimeError: x\n\tat a.b(" + line,
        "Caused by: " + line + "\n    at a.b.c(X.java:1)",
        "\tat app//" + line,
    ):
        _bounded(parse_traceback, text, f"parse_traceback({name})")


def test_traceback_parser_reads_a_bounded_text() -> None:
    frames = "".join(f'  File "/srv/app/m{i}.py", line {i}, in f{i}\n    x()\n' for i in range(20_000))
    text = TB + frames + "ValueError: the end\n"
    assert len(text) > traceback_text.MAX_TRACEBACK_CHARS
    tb = _bounded(parse_traceback, text, "a 1.3 MB traceback")
    # Python's last lines are kept: the raised exception and the innermost frames
    assert tb is not None and tb["type"] == "ValueError" and tb["stack"][-1]["function"] == "f19999"


def test_traceback_results_are_unchanged() -> None:
    text = TB + '  File "/srv/shop/web/cart.py", line 3, in get\n    return x[k]\nshop.errors.CartError: no item'
    tb = parse_traceback(text)
    assert tb is not None and tb["type"] == "shop.errors.CartError" and tb["value"] == "no item"
    # names the old pattern refused (no capital in the last part, or only at its first letter)
    for name in ("error", "E", "shop.errors.cart_error", "Shop.error"):
        assert parse_traceback(f'{TB}  File "x.py", line 1, in f\n{name}: x') is None, name
    for name in ("KeyError", "shop.CartError", "a.B", "_X", "xY"):
        tb = parse_traceback(f'{TB}  File "x.py", line 1, in f\n{name}: x')
        assert tb is not None and tb["type"] == name, name


@pytest.mark.parametrize("name", sorted(LONG_LINES))
def test_grouping_is_linear(name: str) -> None:
    line = LONG_LINES[name]
    _bounded(v1.normalize_message, line, f"v1.normalize_message({name})")
    for grouping in (v1, v2):
        ev = normalize({"kind": "error", "message": line}, 1)
        _bounded(grouping.fingerprint, ev, f"{grouping.VERSION}.fingerprint({name})")
        ev = normalize({"kind": "error", "error": {"type": "E", "value": line, "stack": [{"context_line": line}]}}, 1)
        _bounded(grouping.fingerprint, ev, f"{grouping.VERSION}.fingerprint(frames, {name})")


@pytest.mark.parametrize("name", sorted(LONG_LINES))
def test_digest_of_an_event_is_linear(name: str) -> None:
    """The whole per-event work (scrub, traceback text, grouping) on hostile text everywhere."""
    line = LONG_LINES[name]
    raw = {
        "level": "error",
        "message": TB + line,
        "attrs": {"a": line[:16_000]},
        "error": {"type": "E", "value": line, "stack": TB + line, "extra": {"x": line}},
    }
    ev = normalize(raw, 1)
    _bounded(lambda e: digest([e], Scrubber()), ev, f"digest({name})")
    ev = normalize({"level": "critical", "message": TB + line}, 1)
    _bounded(lambda e: digest([e], Scrubber()), ev, f"digest(log line, {name})")


@pytest.mark.parametrize("name", sorted(LONG_LINES))
def test_event_validation_is_linear(name: str) -> None:
    line = LONG_LINES[name]
    for ts in (line, line[:40], "1" * 5000, "1" * 5000 + ".5"):
        with contextlib.suppress(FieldError):
            _bounded(parse_ts, ts, f"parse_ts({name})")


def test_a_huge_numeric_timestamp_is_a_field_error() -> None:
    # int() refuses more than 4,300 digits with a ValueError: that was a 500 on native ingest
    with pytest.raises(FieldError, match=r"^ts: "):
        normalize({"ts": "1" * 5000}, 1)


@pytest.mark.parametrize("fmt", sorted(PRESETS))
@pytest.mark.parametrize("name", sorted(LONG_LINES))
def test_agent_presets_are_linear(fmt: str, name: str) -> None:
    line = LONG_LINES[name]
    parse = build_line_parser(fmt, None, TimestampParser())
    head = header_pattern(fmt)
    assert parse is not None and head is not None
    prefixes = (
        "",
        "[Sun Dec 04 04:47:44 2005] [",
        "[Wed Oct 11 14:32:52.123456 2000] [core:error] ",
        "<34>Oct 11 22:14:15 host ",
        "Oct 11 22:14:15 host app",
        "Oct 11 22:14:15 host app(",
        "2024-01-02T03:04:05.678+00:00 host ",
        "<34>1 2003-10-11T22:14:15.003Z host app - - [",
        "2015-07-29 17:41:44,747 - INFO  [",
        "2024-01-02 03:04:05,678 [main] ERROR ",
        "ERROR:",
        "2024-01-02 03:04:05,678 - ",
        "2024-01-02 03:04:05,678 INFO ",
    )
    for prefix in prefixes:
        text = prefix + line
        _bounded(parse, text, f"{fmt} preset on {prefix!r} + {name}")
        _bounded(head.match, text, f"{fmt} multiline header on {prefix!r} + {name}")


@pytest.mark.parametrize("name", sorted(LONG_LINES))
def test_agent_timestamps_and_exception_line_are_linear(name: str) -> None:
    line = LONG_LINES[name]
    ts = TimestampParser()
    _bounded(ts, line, f"timestamp({name})")
    _bounded(_EXC_LINE.match, line, f"exception line({name})")


def test_agent_presets_still_parse_their_formats() -> None:
    syslog = build_line_parser("syslog", None, TimestampParser())
    assert syslog is not None
    out = syslog("Oct 11 22:14:15 web-1 CRON[4242]: (root) CMD (run-parts /etc/cron.hourly)")
    assert (
        out is not None
        and out["attrs"]["pid"] == "4242"
        and out["message"] == "(root) CMD (run-parts /etc/cron.hourly)"
    )
    out = syslog("Oct 11 22:14:15 web-1 kernel: [ 12.34] eth0: link up")
    assert out is not None and out["message"] == "[ 12.34] eth0: link up"
    out = syslog("Oct 11 22:14:15 web-1 systemd(pam)[77]: session opened")
    assert out is not None and out["attrs"]["pid"] == "77" and out["message"] == "session opened"


# -- the v1 masks: the linear rewrite gives exactly what `re.sub` gave ------------------------------

_EMAIL_RX, _URL_RX = v1._MASKS[0][0], v1._MASKS[1][0]
# Text made of what the masks' runs are made of, so the generator builds the edge cases (a match
# right after a match, `+` after an address, schemes after `-`, folded letters) far more often
# than random text would.
_PIECES = st.sampled_from(["a", "B", "1", ".", "+", "-", "_", "@", "://", ":", "/", " ", "é", "\u212a", "x.y", "'"])
_TEXT = st.lists(_PIECES, max_size=30).map("".join)


@settings(max_examples=4000, deadline=None)
@given(_TEXT)
def test_linear_email_mask_is_re_sub(text: str) -> None:
    assert v1._mask_emails(text) == _EMAIL_RX.sub("<email>", text)


@settings(max_examples=4000, deadline=None)
@given(_TEXT)
def test_linear_url_mask_is_re_sub(text: str) -> None:
    assert v1._mask_urls(text) == _URL_RX.sub("<url>", text)


def test_url_run_characters_are_what_the_pattern_folds() -> None:
    run = re.compile(r"[a-z0-9+.-]", re.I)
    assert {chr(c) for c in range(0x10000) if run.match(chr(c))} == v1._URL_RUN_CHARS
