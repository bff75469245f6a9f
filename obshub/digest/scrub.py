"""PII scrubbing before anything is stored, on by default. The rules (docs/security.md, "PII
scrubbing"; anchored on Sentry's default denylist, sentry_sdk.scrubber.DEFAULT_DENYLIST):

- keys: a value under a sensitive key becomes "[Filtered]", wherever it sits: attrs, the
  request/contexts/breadcrumbs/tags/extra an error carries, frame variables (`vars`, `locals`,
  any frame key but the fixed ones). A key is sensitive when it contains one of DEFAULT_KEYS
  (`db_password`), is one of EXACT_KEYS (`session`, `PHPSESSID`), has one of WORD_KEYS as a word
  (`db_pass`, `smtpPw`), or matches a pattern of OBSHUB_SCRUB_KEYS.
- text, in every string (messages, error values, traceback text, attr values, nested strings):
  `<sensitive key>=<value>` and `<sensitive key>: <value>` (EXACT_KEYS aside: `sessionid: …`
  in a log line is an id; `password=…`, `"token": "…"`,
  `Authorization: Bearer …`) lose the value; `Bearer <token>` loses the token; a URL's password
  (`scheme://user:pass@host`) is filtered; card numbers (13-19 digits passing the Luhn check)
  are masked.
- depth: nothing nested deeper than the error depth normalize accepts (events.Limits, 32) is
  kept: past it a value is "[Filtered]", never stored unscrubbed.

Cost on the ingest hot path: one memoized lookup per attr key; per string a few C-level
substring checks (`=`, `:`, `://`, "earer") that most strings fail; past them one regex over the
lowercase text for a sensitive word shortly before a separator (~10 ns a character); only when
one is found, a walk over the string's separators (each key judged by the memoized key rules).
Measured with bench/ingest.py and bench/errors.py against the scrubber without text rules.
"""

from __future__ import annotations

import re
from typing import Any

from obshub.events import DEFAULT_LIMITS, NormalizedEvent

__all__ = ["DEFAULT_KEYS", "EXACT_KEYS", "FILTERED", "WORD_KEYS", "Scrubber"]

FILTERED = "[Filtered]"
# Contained anywhere in a key (case-insensitive): Sentry's denylist and Relay's password rule
# (password, passwd, secret, api_key, apikey, auth, credentials, mysql_pwd, privatekey,
# private_key, token, the csrf/xsrf cookies and headers), plus card data.
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
    "privatekey",
    "credit_card",
    "card_number",
    "cvv",
    "ssn",
    "csrf",
    "xsrf",
    "bearer",
)
# Whole keys only (case-insensitive): Sentry's session cookie names. As substrings they would
# also filter `session_id`, which obshub correlates on.
EXACT_KEYS = frozenset(
    ("session", "sessionid", "phpsessid", "connect.sid", "aiohttp_session", "user_session", "_session", "symfony")
)
# Words of a key (split at non-alphanumerics and camelCase): too short to match as substrings
# (`pass` is in `passenger`, `compass`), but `db_pass`, `DB_PASS`, `smtpPass`, `pw` are secrets.
WORD_KEYS = frozenset(("pass", "pw"))
_WORDS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_MAX_DEPTH = DEFAULT_LIMITS.max_error_depth  # what normalize accepts; deeper is filtered

# Text rules. Every pattern is linear in the text (tests/security/test_parsers.py). A key is the
# run of [\w.-] before a separator, judged by the key rules above; the value is a quoted string,
# or an auth scheme and its credential, or what runs up to a space or a delimiter.
_KEY_BEFORE = re.compile(r"[\w.-]*+")  # on the reversed text, from the separator backwards
_VALUE = re.compile(
    r"[ \t]*+(?:\"(?P<dq>[^\"]*+)|'(?P<sq>[^']*+)|(?:bearer|basic|digest|token|negotiate|ntlm)[ \t]++"
    r"(?P<cred>[^\s,;&\"'<>(){}\[\]]*+)|(?P<bare>[^\s,;&\"'<>(){}\[\]]*+))",
    re.I,
)
_URL_PASSWORD = re.compile(r"(://[^\s/?#@:]*+:)[^\s/?#@]++(?=@)")
_BEARER = re.compile(r"\b([Bb]earer[ \t]++)[A-Za-z0-9\-._~+/]++=*+")

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
    if len(text) < _MIN_CARD_TEXT:
        return text
    # _MAYBE_CARD needs 8 digits: fewer ASCII ones in an ASCII text (two C calls, ~0.1 µs for a
    # log line) spare the regex (~5 ns a character). `\d` also matches other scripts' digits,
    # hence ASCII texts only.
    if text.isascii() and len(text.encode().translate(None, _NOT_DIGITS)) < 8:
        return text
    if not _MAYBE_CARD.search(text):
        return text
    return _CARD.sub(_mask_match, text)


_NOT_DIGITS = bytes(b for b in range(256) if not 48 <= b <= 57)


def _trie(words: list[str]) -> str:
    """An alternation of `words` (escaped) written as a trie: the same strings, but `re` tests
    one character per step instead of trying every word in turn (the text hint ~0.85 -> ~0.6 µs
    on a 70-character log line)."""
    root: dict[str, Any] = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(ch) + emit(sub) for ch, sub in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return emit(root)


_MEMO_KEYS = 4096  # distinct keys whose verdict `Scrubber.sensitive` remembers
_MEMO_KEY_CHARS = 256  # longer keys are judged every time, never remembered


class Scrubber:
    def __init__(self, extra_keys: tuple[str, ...] = (), enabled: bool = True) -> None:
        self.enabled = enabled
        keys = [re.escape(k.strip().lower()) for k in (*DEFAULT_KEYS, *extra_keys) if k.strip()]
        self._key = re.compile("|".join(keys))
        # A necessary condition for `<sensitive key>=` in a text, on its lowercase form (~10 ns a
        # character): a sensitive word at most 64 characters before a separator. Most text with
        # `=` or `:` has none (`order=12 … session …`), and then no separator is looked at.
        words = _trie([*(k.strip().lower() for k in (*DEFAULT_KEYS, *extra_keys) if k.strip()), *WORD_KEYS])
        self._hint = re.compile(f"(?:{words})" + r"[^\s=:\"'<>]{0,64}+[\"']?[ \t]*+[=:]")

        # Keys repeat across events: memoize the regex. Keys are client input, so the memo is
        # bounded in entries and in key length (at most 4,096 x 256 chars, ~1 MiB).
        self._seen: dict[str, bool] = {}
        self._seen_in_text: dict[str, bool] = {}  # the same bounds
        # Attribute values repeat too (a log file's path, a route, a label): their scrubbed text,
        # with the same bounds. A log line's message is unique and is not remembered.
        self._attr_texts: dict[str, str] = {}

    def sensitive(self, key: str) -> bool:
        """The key rules, for a key of a structure (attrs, an error's objects, frames)."""
        hit = self._seen.get(key)
        if hit is None:
            hit = key.lower() in EXACT_KEYS or self._sensitive_word(key)
            if len(self._seen) < _MEMO_KEYS and len(key) <= _MEMO_KEY_CHARS:
                self._seen[key] = hit
        return hit

    def _sensitive_word(self, key: str) -> bool:
        """The key rules without EXACT_KEYS, for a key written in text: `sessionid: 0x24f…` in a
        log line is an id (ZooKeeper's), not a session cookie."""
        hit = self._seen_in_text.get(key)
        if hit is None:
            hit = bool(self._key.search(key.lower())) or any(
                w.lower() in WORD_KEYS for w in _WORDS.split(key) if 1 < len(w) < 5
            )
            if len(self._seen_in_text) < _MEMO_KEYS and len(key) <= _MEMO_KEY_CHARS:
                self._seen_in_text[key] = hit
        return hit

    def changes_attr(self, key: str, value: Any) -> bool:
        """True when `event` would filter or mask this top-level attribute: for writers (check
        definitions) that must read back exactly what they stored, so they refuse it up front."""
        if not self.enabled:
            return False
        return self.sensitive(key) or (isinstance(value, str) and self.text(value) != value)

    def text(self, text: str) -> str:
        """A string with the text rules applied (see the module docstring)."""
        if "=" in text or ":" in text:
            if "://" in text and "@" in text:
                text = _URL_PASSWORD.sub(r"\1" + FILTERED, text)
            if self._hint.search(text.lower()):
                text = self._pairs(text)
        if "earer" in text:
            text = _BEARER.sub(r"\1" + FILTERED, text)
        return _mask_cards(text)

    def _pairs(self, text: str) -> str:
        """`key=value` / `key: value` with a sensitive key: the value filtered. One pass over the
        separators; the key before each is read on the reversed text (linear: each run of key
        characters ends at one separator)."""
        rev = text[::-1]
        n = len(text)
        out: list[str] = []
        done = 0  # copied up to here; separators inside a filtered value are skipped
        for sep in _SEPARATORS.finditer(text):
            at = sep.start()
            if at < done:
                continue
            end = at
            while end > done and text[end - 1] in " \t":  # `key = value`
                end -= 1
            if end > done and text[end - 1] in "\"'":  # `"key": "value"`
                end -= 1
            key = _KEY_BEFORE.match(rev, n - end)
            start = n - key.end() if key is not None else end
            if start == end or start < done or not self._sensitive_word(text[start:end]):
                continue
            if start > 0 and text[start - 1] == "/":  # a URL path segment (`GET /secret: refused`)
                continue
            value = _VALUE.match(text, at + 1)
            if value is None:
                continue
            group = value.lastgroup or "bare"
            lo, hi = value.span(group)
            if lo == hi:
                continue
            out += (text[done:lo], FILTERED)
            done = hi
        return "".join(out) + text[done:] if out else text

    def _deep(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):  # the common case first: this runs ~70 times per error event
            return self.text(value)
        if not isinstance(value, (dict, list)):
            return value
        if depth >= _MAX_DEPTH:
            return FILTERED  # deeper than normalize lets through: never stored unscrubbed
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

    def _frames(self, exc: Any, depth: int) -> None:
        # Frames have fixed keys (module, function, lineno...) that hold code, not data: those
        # are kept as sent, which is most of the cost saved on a 30-frame stack. Anything else
        # (`vars` of sentry-sdk, `locals`, whatever a client adds) is scrubbed like any value.
        if not isinstance(exc, dict):
            return
        if isinstance(exc.get("stack"), str):  # traceback text (parsed into frames after this)
            exc["stack"] = self.text(exc["stack"])
        for f in exc.get("stack") or () if isinstance(exc.get("stack"), list) else ():
            if isinstance(f, dict):
                for k, v in f.items():
                    if k not in _FRAME_CODE and v is not None:
                        f[k] = FILTERED if self.sensitive(k) else self._deep(v, depth + 2)
        if isinstance(exc.get("value"), str):
            exc["value"] = self.text(exc["value"])

    def _error(self, err: dict[str, Any]) -> dict[str, Any]:
        out = {k: (v if k in ("stack", "chain", "value", "type") else self._deep(v, 1)) for k, v in err.items()}
        self._frames(out, 1)
        for exc in out.get("chain") or () if isinstance(out.get("chain"), list) else ():
            if isinstance(exc, dict):
                for k, v in exc.items():
                    if k not in ("stack", "value", "type"):
                        exc[k] = self._deep(v, 3)
            self._frames(exc, 3)
        return out

    def _attr_text(self, value: str) -> str:
        """`text` of an attribute value, remembered (~0.05 instead of ~0.3-0.5 µs a value)."""
        out = self._attr_texts.get(value)
        if out is None:
            out = self.text(value)
            if len(self._attr_texts) < _MEMO_KEYS and len(value) <= _MEMO_KEY_CHARS:
                self._attr_texts[value] = out
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
                    attrs[k] = self._attr_text(v)
                elif isinstance(v, list):
                    attrs[k] = [self.text(x) if isinstance(x, str) else x for x in v]
        msg = ev["message"]
        if msg:
            ev["message"] = self.text(msg)
        if ev["error"] is not None:
            ev["error"] = self._error(ev["error"])


_SEPARATORS = re.compile(r"[=:]")
# Frame keys that hold code (where and what ran), kept as sent; every other frame key is data.
_FRAME_CODE = frozenset(
    (
        "filename",
        "abs_path",
        "module",
        "function",
        "lineno",
        "colno",
        "in_app",
        "context_line",
        "pre_context",
        "post_context",
        "package",
        "platform",
        "instruction_addr",
        "symbol",
        "raw_function",
    )
)
