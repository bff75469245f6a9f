"""Grouping v1 — FROZEN. Changing what this file computes re-splits every existing group; write
v2.py instead. (How it computes may change when the output provably does not: the email and url
masks run in linear time, see `_mask_emails`, with tests comparing them to the plain `re.sub`.)

What makes two occurrences "the same bug", strongest signal first:
1. A client `fingerprint` (Sentry-style list of strings) wins; `{{ default }}` in it expands
   to the default components below, so `["{{ default }}", "tenant-a"]` splits one group by tenant.
2. The exception chain: for each exception, its type plus its in-app frames as module +
   function + normalized context line. Line numbers are left out on purpose: an edit above the
   function must not split a group. When no frame is in-app, all frames are used.
3. No frames: type + the message with its variable parts masked (emails, urls, ips, uuids,
   hashes, hex, dates, numbers), so "order 1234 failed" and "order 99 failed" group together.
4. No error object at all: the masked message.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["VERSION", "fingerprint", "guess_in_app", "normalize_message", "title_and_culprit"]

VERSION = "v1"

# The masks, in order (the definition of v1's message key: never change one).
_MASKS = [
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<email>"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.I), "<url>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"), "<date>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<time>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}\b", re.I), "<ip>"),
    (re.compile(r"\b[0-9a-f]{32,128}\b", re.I), "<hash>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"-?\b\d+(?:\.\d+)?\b"), "<num>"),
]
_EMAIL, _URL = _MASKS[0][0], _MASKS[1][0]

# Why the first two masks are not a plain `re.sub`: `sub` tries every start position, and from
# each position inside a run of name characters ([\w.+-] for an email, [a-z0-9+.-] for a url
# scheme) the pattern re-scans the rest of the run: quadratic in the run (a 60 KB word took
# seconds). But from any start inside one run the outcome is the same (the run must end at the
# `@` / `://`), so only the first start of each run is tried: the same matches, in linear time.
_EMAIL_AT_RUN_START = re.compile(r"(?<![\w.+-])" + _EMAIL.pattern)
_EMAIL_NAME = re.compile(r"[\w.+-]")
_EMAIL_RUN = re.compile(r"[\w.+-]*")
_URL_START = re.compile(r"\b[a-z]", re.I)
# [a-z0-9+.-] under re.I: ASCII plus the four characters that fold to an ASCII letter.
_URL_RUN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-\u0130\u0131\u017f\u212a")


def _mask_emails(msg: str) -> str:
    """`_EMAIL.sub("<email>", msg)` in linear time."""
    if "@" not in msg:
        return msg
    out: list[str] = []
    done = at = 0  # copied up to `done`; the next match starts at `at` or later
    while True:
        if 0 < at < len(msg) and _EMAIL_NAME.match(msg, at - 1) and _EMAIL_NAME.match(msg, at):
            # `at` is inside a run, right after the last match: a start of its own
            m = _EMAIL.match(msg, at)
            if m is None:
                run = _EMAIL_RUN.match(msg, at)  # later starts in this run fail alike
                at = run.end() if run is not None else at + 1
                continue
        else:
            m = _EMAIL_AT_RUN_START.search(msg, at)
            if m is None:
                break
        out += (msg[done : m.start()], "<email>")
        done = at = m.end()
    return "".join(out) + msg[done:] if out else msg


def _mask_urls(msg: str) -> str:
    """`_URL.sub("<url>", msg)` in linear time: per `://`, one try from the first start of the
    scheme run before it."""
    if "://" not in msg:
        return msg
    out: list[str] = []
    done = at = 0
    while (sep := msg.find("://", at)) >= 0:
        run = sep
        while run > at and msg[run - 1] in _URL_RUN_CHARS:
            run -= 1
        start = _URL_START.search(msg, run, sep)
        m = _URL.match(msg, start.start()) if start is not None else None
        if m is None:
            at = sep + 1
            continue
        out += (msg[done : m.start()], "<url>")
        done = at = m.end()
    return "".join(out) + msg[done:] if out else msg


_APPLY: list[Callable[[str], str]] = [
    _mask_emails,
    _mask_urls,
    *(functools.partial(rx.sub, repl) for rx, repl in _MASKS[2:]),
]
_STDLIB_HINTS = ("site-packages", "dist-packages", "/lib/python", "<frozen ", "\\lib\\")
_THIRD_PARTY_MODULES = (
    "starlette",
    "uvicorn",
    "django",
    "flask",
    "werkzeug",
    "fastapi",
    "httpx",
    "requests",
    "urllib3",
    "asyncio",
    "concurrent",
    "threading",
    "sqlalchemy",
    "anyio",
    "java.",
    "javax.",
    "sun.",
    "jdk.",
    "org.springframework",
    "org.apache",
)


def normalize_message(msg: str) -> str:
    """Mask the variable parts of a message (order matters: emails before numbers...)."""
    for mask in _APPLY:
        msg = mask(msg)
    return msg.strip()


def guess_in_app(frame: dict[str, Any]) -> bool:
    """In-app default when the SDK left it unset: not in site-packages, stdlib or known frameworks."""
    fn = str(frame.get("filename") or frame.get("abs_path") or "")
    if any(h in fn for h in _STDLIB_HINTS):
        return False
    mod = str(frame.get("module") or "")
    return not any(
        mod == m.rstrip(".") or mod.startswith(m if m.endswith(".") else m + ".") for m in _THIRD_PARTY_MODULES
    )


def _in_app(frame: dict[str, Any]) -> bool:
    v = frame.get("in_app")
    return guess_in_app(frame) if v is None else bool(v)


_CONTEXT_CACHE: dict[str, str] = {}  # source lines repeat across events: ~70% of fingerprint time
_CONTEXT_CACHE_LINES = 8192  # cleared when full; lines over 512 chars are not kept (<= ~8 MiB)


def _normalized_context(ctx: str) -> str:
    """normalize_message, memoized (a pure function, so the groups are unchanged)."""
    hit = _CONTEXT_CACHE.get(ctx)
    if hit is None:
        hit = normalize_message(ctx)
        if len(ctx) <= 512:
            if len(_CONTEXT_CACHE) >= _CONTEXT_CACHE_LINES:
                _CONTEXT_CACHE.clear()
            _CONTEXT_CACHE[ctx] = hit
    return hit


def _frame_key(frame: dict[str, Any]) -> list[str]:
    ctx = str(frame.get("context_line") or "").strip()
    return [
        str(frame.get("module") or frame.get("filename") or "?"),
        str(frame.get("function") or "?"),
        _normalized_context(ctx) if ctx else "",
    ]


def _exceptions(error: dict[str, Any]) -> list[dict[str, Any]]:
    """The chain outermost-cause first, the raised exception last."""
    chain = error.get("chain")
    chain = [c for c in chain if isinstance(c, dict)] if isinstance(chain, list) else []
    return [*chain, error]


def _frames(exc: dict[str, Any]) -> list[dict[str, Any]]:
    stack = exc.get("stack")
    return [f for f in stack if isinstance(f, dict)] if isinstance(stack, list) else []


def default_components(ev: Mapping[str, Any]) -> list[Any]:
    error = ev.get("error")
    if not isinstance(error, dict):
        return ["message", normalize_message(ev.get("message") or "")]
    excs = _exceptions(error)
    all_frames = [f for e in excs for f in _frames(e)]
    if all_frames:
        use_all = not any(_in_app(f) for f in all_frames)
        return [
            "stack",
            [
                [str(e.get("type") or "Error"), [_frame_key(f) for f in _frames(e) if use_all or _in_app(f)]]
                for e in excs
            ],
        ]
    last = excs[-1]
    return [
        "type",
        str(last.get("type") or "Error"),
        normalize_message(str(last.get("value") or ev.get("message") or "")),
    ]


def fingerprint(ev: Mapping[str, Any]) -> str:
    """32 hex chars naming the group of this error event."""
    default = default_components(ev)
    custom = ev.get("fingerprint")
    if isinstance(custom, list) and custom:
        parts: list[Any] = [default if str(p).strip() in ("{{ default }}", "{{default}}") else str(p) for p in custom]
        components: list[Any] = ["custom", parts]
    else:
        components = default
    raw = json.dumps([VERSION, components], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def title_and_culprit(ev: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """(title, type, culprit): what a person reads in the list; culprit = innermost in-app frame."""
    error = ev.get("error")
    if not isinstance(error, dict):
        return (ev.get("message") or "(no message)")[:200], None, ev.get("logger")
    typ = error.get("type")
    value = error.get("value") or ""
    title = f"{typ}: {value}" if typ and value else (typ or value or ev.get("message") or "Error")
    frames = _frames(error)
    app = [f for f in frames if _in_app(f)] or frames
    culprit = None
    if app:
        f = app[-1]
        culprit = f"{f.get('module') or f.get('filename') or '?'} in {f.get('function') or '?'}"
    return str(title)[:200], typ, culprit
