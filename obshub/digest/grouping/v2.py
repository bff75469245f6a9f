"""Grouping v2 — FROZEN. Changing this file re-splits every existing group; write v3.py instead.

Why v2: one traceback must be one group whichever way it arrives. The same Python exception
reaches the hub as obshub_sdk frames (module = `__name__`, function = qualified name like
`Cart.get`, no source line), as traceback text from a log file (a path, the bare function name,
the source line) and as sentry-sdk frames (module, function, source line). v1 keys a frame on
module + function + source line, which no two of those agree on, so each way made its own group.

v2 keys everything on what every way can give:
- a Python frame (its path ends in `.py`): the module is the path's last two components, as
  traceback text gives it (`/srv/shop/web/checkout.py` -> `web.checkout`; where the code is
  deployed does not matter), the function its last dotted part (`Cart.get` -> `get`);
- any other frame: module (else file) + function, as in v1 (Java: class + method);
- no source line (obshub_sdk sends none), no line number (as in v1: an edit above the function
  must not split a group);
- in a stack, an exception type by its last dotted part (sentry-sdk sends `CartError`,
  obshub_sdk and traceback text `shop.errors.CartError`);
- the chain: the raised exception, then its causes in a fixed order (obshub_sdk lists causes
  nearest first, Sentry and traceback text oldest first).
Client fingerprints, in-app rules and message masking are v1's. An error without frames and an
event without an error object get exactly v1's components (only the version in the hash
differs).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from obshub.digest.grouping.v1 import guess_in_app, normalize_message

__all__ = ["VERSION", "fingerprint", "frame_key", "title_and_culprit"]

VERSION = "v2"


def _in_app(frame: dict[str, Any]) -> bool:
    v = frame.get("in_app")
    return guess_in_app(frame) if v is None else bool(v)


def _python_module(path: str) -> str:
    """The module a Python path names, independent of where the code is deployed: the part
    after site-packages, else the last two path components."""
    p = path.replace("\\", "/")
    for marker in ("site-packages/", "dist-packages/"):
        if marker in p:
            return p.split(marker, 1)[1].rsplit(".py", 1)[0].replace("/", ".")
    parts = [x for x in p.rsplit(".py", 1)[0].split("/") if x]
    return ".".join(parts[-2:])


def frame_key(frame: dict[str, Any]) -> tuple[str, str]:
    """(module, function) of a frame as v2 compares them."""
    path = frame.get("abs_path") or frame.get("filename")
    function = str(frame.get("function") or "?")
    if isinstance(path, str) and path.endswith(".py"):
        return _python_module(path), function.rsplit(".", 1)[-1]
    return str(frame.get("module") or frame.get("filename") or "?"), function


def _type(exc: dict[str, Any]) -> str:
    return str(exc.get("type") or "Error").rsplit(".", 1)[-1]


def _frames(exc: dict[str, Any]) -> list[dict[str, Any]]:
    stack = exc.get("stack")
    return [f for f in stack if isinstance(f, dict)] if isinstance(stack, list) else []


def default_components(ev: Mapping[str, Any]) -> list[Any]:
    error = ev.get("error")
    if not isinstance(error, dict):
        return ["message", normalize_message(ev.get("message") or "")]
    chain = error.get("chain")
    causes = [c for c in chain if isinstance(c, dict)] if isinstance(chain, list) else []
    excs = [error, *causes]
    all_frames = [f for e in excs for f in _frames(e)]
    if all_frames:
        use_all = not any(_in_app(f) for f in all_frames)
        parts = [[_type(e), [list(frame_key(f)) for f in _frames(e) if use_all or _in_app(f)]] for e in excs]
        return ["stack", [parts[0], *sorted(parts[1:])]]
    return [
        "type",
        str(error.get("type") or "Error"),
        normalize_message(str(error.get("value") or ev.get("message") or "")),
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
    """(title, type, culprit): what a person reads in the list. The culprit is the innermost
    in-app frame as v2 compares frames, so it reads the same whichever way the first
    occurrence arrived."""
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
        module, function = frame_key(app[-1])
        culprit = f"{module} in {function}"
    return str(title)[:200], typ, culprit
