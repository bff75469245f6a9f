"""PII scrubbing before anything is stored, on by default.

Values under sensitive keys (passwords, tokens, secrets, authorization and cookie headers...)
become "[Filtered]", wherever they sit: attrs, and the request/contexts/breadcrumbs/tags an error
carries. Card numbers (13-19 digits passing the Luhn check) are masked in any string. Extra key
patterns come from OBSHUB_SCRUB_KEYS. The cost on the ingest hot path is one regex per attr key
and a cheap necessary-condition scan per string (`_MAYBE_CARD`, ~0.5 µs per message).
"""

from __future__ import annotations

import re
from typing import Any

from obshub.events import NormalizedEvent

__all__ = ["FILTERED", "Scrubber"]

FILTERED = "[Filtered]"
DEFAULT_KEYS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "auth",
    "credential",
    "cookie",
    "session_key",
    "private_key",
    "credit_card",
    "card_number",
    "cvv",
    "ssn",
)
# Contiguous 13-19 digits, or the printed shapes 4-4-4-4(-3) and Amex 4-6-5 with one separator.
# Loose digit runs with spaces ("081109 204453 34", an HDFS timestamp) pass Luhn 1 time in 10.
# Card numbers start with 2-6 (issuer ranges), which also spares epoch timestamps (1...).
_CARD = re.compile(r"\b(?:[2-6]\d{12,18}|[2-6]\d{3}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?|3\d{3}([ -])\d{6}\2\d{5})\b")
# A necessary condition for a _CARD match, cheap to scan for: every alternative above contains
# an issuer digit 2-6, three digits, an optional separator and four digits. Most text fails it
# at its first character class, so the full pattern and its substitution never run.
_MAYBE_CARD = re.compile(r"[2-6]\d{3}[ -]?\d{4}")
_MIN_CARD_TEXT = 13  # the shortest match: 13 contiguous digits


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _mask_match(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return FILTERED if 13 <= len(digits) <= 19 and _luhn(digits) else m.group(0)


def _mask_cards(text: str) -> str:
    if len(text) < _MIN_CARD_TEXT or not _MAYBE_CARD.search(text):
        return text
    return _CARD.sub(_mask_match, text)


_MEMO_KEYS = 4096  # distinct keys whose verdict `Scrubber.sensitive` remembers
_MEMO_KEY_CHARS = 256  # longer keys are judged every time, never remembered


class Scrubber:
    def __init__(self, extra_keys: tuple[str, ...] = (), enabled: bool = True) -> None:
        self.enabled = enabled
        keys = [re.escape(k.strip().lower()) for k in (*DEFAULT_KEYS, *extra_keys) if k.strip()]
        self._key = re.compile("|".join(keys))

        # Keys repeat across events: memoize the regex. Keys are client input, so the memo is
        # bounded in entries and in key length (at most 4,096 x 256 chars, ~1 MiB).
        self._seen: dict[str, bool] = {}

    def sensitive(self, key: str) -> bool:
        hit = self._seen.get(key)
        if hit is None:
            hit = bool(self._key.search(key.lower()))
            if len(self._seen) < _MEMO_KEYS and len(key) <= _MEMO_KEY_CHARS:
                self._seen[key] = hit
        return hit

    def changes_attr(self, key: str, value: Any) -> bool:
        """True when `event` would filter or mask this top-level attribute: for writers (check
        definitions) that must read back exactly what they stored, so they refuse it up front."""
        if not self.enabled:
            return False
        return self.sensitive(key) or (isinstance(value, str) and _mask_cards(value) != value)

    def _deep(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):  # the common case first: this runs ~70 times per error event
            return _mask_cards(value)
        if depth > 20 or not isinstance(value, (dict, list)):
            return value
        if isinstance(value, dict):
            return {
                k: (
                    FILTERED
                    if isinstance(k, str) and self.sensitive(k) and v not in (None, "")
                    else self._deep(v, depth + 1)
                )
                for k, v in value.items()
            }
        # header lists like [["Authorization", "Bearer x"], ...] as Sentry sends them
        if len(value) == 2 and isinstance(value[0], str) and self.sensitive(value[0]):
            return [value[0], FILTERED]
        return [self._deep(v, depth + 1) for v in value]

    def _frames(self, exc: Any) -> None:
        # Frames have fixed keys (module, function, lineno...); only `vars` (locals captured by
        # some SDKs) can hold secrets. Skipping the rest is most of the cost on a 30-frame stack.
        if not isinstance(exc, dict):
            return
        if isinstance(exc.get("stack"), str):  # traceback text (parsed into frames after this)
            exc["stack"] = _mask_cards(exc["stack"])
        for f in exc.get("stack") or () if isinstance(exc.get("stack"), list) else ():
            if isinstance(f, dict) and f.get("vars"):
                f["vars"] = self._deep(f["vars"])
        if isinstance(exc.get("value"), str):
            exc["value"] = _mask_cards(exc["value"])

    def _error(self, err: dict[str, Any]) -> dict[str, Any]:
        out = {k: (v if k in ("stack", "chain", "value", "type") else self._deep(v)) for k, v in err.items()}
        self._frames(out)
        for exc in out.get("chain") or () if isinstance(out.get("chain"), list) else ():
            self._frames(exc)
        return out

    def event(self, ev: NormalizedEvent) -> None:
        """Scrub a normalized event in place."""
        if not self.enabled:
            return
        attrs = ev["attrs"]
        if attrs:
            for k, v in attrs.items():
                if self.sensitive(k):
                    attrs[k] = FILTERED
                elif isinstance(v, str):
                    attrs[k] = _mask_cards(v)
        msg = ev["message"]
        if msg:
            ev["message"] = _mask_cards(msg)
        if ev["error"] is not None:
            ev["error"] = self._error(ev["error"])
