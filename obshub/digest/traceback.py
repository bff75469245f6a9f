"""Turn traceback *text* (what a log file holds: Python tracebacks, Java stack traces shipped by
the agent as one multiline event) into the structured `error` object grouping understands.

Parsed frames carry `in_app` (the grouping's own guess, written down) so the error page
emphasises the app's frames as it does for frames an SDK sent."""

from __future__ import annotations

import re
from typing import Any

from obshub.digest.grouping.v1 import guess_in_app

__all__ = ["MAX_TRACEBACK_CHARS", "parse_traceback"]

# Every pattern here runs on attacker-supplied text (any ingest credential can send a message), so
# each is linear in the line: no quantifier can re-scan what another one already gave up (the old
# exception pattern, `[\w.]*` before `[A-Z]\w*`, backtracked quadratically: 4.6 s for one 14 KB
# line, 85 s at 60 KB). tests/security/test_parsers.py times each on adversarial lines.
_PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)\s*$')
# The dotted name is taken whole (possessive: only ':' or the end may follow it, so giving a
# character back could never match); `_exception_type` then checks its last part.
_PY_EXC = re.compile(r"^(?P<type>[A-Za-z_][\w.]*+)(?::\s?(?P<value>.*))?$")
_PY_HEADER = "Traceback (most recent call last)"
_PY_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")
_JAVA_EXC = re.compile(r"^(?:Caused by: )?(?P<type>[a-zA-Z_$][\w$]*+(?:\.[\w$]++)+)(?::\s?(?P<value>.*))?$")
# Java 9+ prefixes a frame with its class loader and module: `at java.base/java.util.HashMap.get(...)`,
# `at app//com.shop.Orders.place(...)`. Frames in the JDK's own modules are never the app's code.
_JAVA_FRAME = re.compile(
    r"^\s+at (?:(?P<loader>[\w$.@-]*+)/)?(?:(?P<mod>[\w$.@-]*+)/)?(?P<cls>[\w$.]+)\."
    r"(?P<func>[\w$<>]++)\((?P<file>[^:)]*+)(?::(?P<line>\d++))?\)"
)
# What is parsed of one text: a traceback longer than this is not one a person reads, and the
# parse is linear, so this bounds its cost (~20 ms). Python prints the raised exception last, so
# the end of a longer text is kept; Java prints it first, so the beginning is.
MAX_TRACEBACK_CHARS = 256 * 1024
_JDK_MODULES = ("java.", "jdk.")


def _module_of(path: str) -> str:
    """A module name that does not depend on where a host deployed the code: the part after
    site-packages, else the last two path components (/srv/shop/web/x.py and /opt/app/web/x.py
    are the same code on two hosts, and must group together)."""
    p = path.replace("\\", "/")
    for marker in ("site-packages/", "dist-packages/"):
        if marker in p:
            return p.split(marker, 1)[1].rsplit(".py", 1)[0].replace("/", ".")
    parts = [x for x in p.rsplit(".py", 1)[0].split("/") if x]
    return ".".join(parts[-2:])


def _exception_type(name: str) -> bool:
    """What the exception pattern once said with a backtracking tail: a name whose last dotted
    part holds an ASCII capital (at index 1 or later when the name has no dot: `ValueError`,
    `shop.errors.CartError`, not `error` or `E`)."""
    dot = name.rfind(".")
    last = name[dot + 1 :] if dot >= 0 else name[1:]
    return any("A" <= c <= "Z" for c in last)


def _python(lines: list[str]) -> dict[str, Any] | None:
    excs: list[dict[str, Any]] = []
    frames: list[dict[str, Any]] = []
    in_tb = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(_PY_HEADER):
            in_tb, frames = True, []
        elif in_tb and (m := _PY_FRAME.match(line)):
            ctx = lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].startswith("    ") else None
            path = m.group("file")
            frame = {
                "filename": path,
                "lineno": int(m.group("line")),
                "function": m.group("func"),
                "module": _module_of(path),
                "context_line": ctx,
            }
            frame["in_app"] = guess_in_app(frame)
            frames.append(frame)
        elif (
            in_tb
            and line
            and not line.startswith(" ")
            and (m := _PY_EXC.match(line.strip()))
            and _exception_type(m.group("type"))
        ):
            excs.append({"type": m.group("type"), "value": (m.group("value") or "").strip(), "stack": frames})
            in_tb = False
        i += 1
    if not excs:
        return None
    last = excs[-1]
    if len(excs) > 1:
        last["chain"] = excs[:-1]
    return last


def _java(lines: list[str]) -> dict[str, Any] | None:
    excs: list[dict[str, Any]] = []
    for line in lines:
        if (m := _JAVA_FRAME.match(line)) and excs:
            frame = {
                "module": m.group("cls"),
                "function": m.group("func"),
                "filename": m.group("file"),
                "lineno": int(m.group("line")) if m.group("line") else None,
            }
            module = m.group("mod") if m.group("mod") is not None else m.group("loader")  # `x/` alone is a module
            frame["in_app"] = not (module or "").startswith(_JDK_MODULES) and guess_in_app(frame)
            excs[-1]["stack"].insert(0, frame)
        elif (m := _JAVA_EXC.match(line.strip())) and (
            "Exception" in line or "Error" in line or line.startswith("Caused by")
        ):
            excs.append({"type": m.group("type"), "value": (m.group("value") or "").strip(), "stack": []})
    if not excs or not any(e["stack"] for e in excs):
        return None
    # Java prints the outermost exception first and its causes after; the root cause is what
    # was raised first, so the chain reads cause-first like Python's.
    ordered = excs[::-1]
    last = ordered[-1]
    if len(ordered) > 1:
        last["chain"] = ordered[:-1]
    return last


def parse_traceback(text: str) -> dict[str, Any] | None:
    """The error object for a message holding a traceback, or None."""
    if _PY_HEADER in text:
        if len(text) > MAX_TRACEBACK_CHARS:
            text = text[-MAX_TRACEBACK_CHARS:].split("\n", 1)[-1]  # from a whole line on
            if _PY_HEADER not in text:  # inside the last traceback: its innermost frames
                text = f"{_PY_HEADER}\n{text}"
        return _python(text.splitlines())
    if "\tat " in text or "\n    at " in text or "\n  at " in text:
        if len(text) > MAX_TRACEBACK_CHARS:
            text = text[:MAX_TRACEBACK_CHARS].rsplit("\n", 1)[0]
        return _java(text.splitlines())
    return None
