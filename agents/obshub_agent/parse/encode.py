"""Complete lines of one file -> NDJSON event bytes (the agent's hot path).

Per line the JSON path does one `orjson.loads`, a handful of dict operations and one `dumps`
(~3 µs on this class of machine); no per-line hashing: the event id is the file's uid (a hash of
host, device, inode, head fingerprint and truncation generation, computed once per file) plus
the line's byte offset in hex. Replaying a file from any checkpoint therefore produces the same
ids, and the hub's create-if-absent store turns replays into duplicates counted, not stored.

Multiline groups lines by a start pattern; a group's id and offset are those of its first line,
so a group re-read after a restart gets the same id.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from ..config import InputConfig, MultilineConfig
from .presets import build_line_parser, header_pattern
from .timestamps import TimestampParser

try:  # orjson: ~5x faster loads/dumps than the stdlib on the hot path; optional
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
    _dumps: Callable[[Any], bytes] = orjson.dumps
    _JSONError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    import json

    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()

    _JSONError = ValueError

__all__ = ["FileEncoder", "dumps", "loads"]

dumps = _dumps
loads = _loads

_TS_KEYS = ("ts", "timestamp", "@timestamp", "time")
# The hub's per-event limits (obshub events.Limits defaults): a line over them would be rejected
# whole, so the agent cuts what it builds itself (message, attrs values) and flags attrs.truncated.
_MESSAGE_MAX_BYTES = 256 * 1024
_ATTR_VALUE_MAX_BYTES = 16 * 1024


def _cut(text: str, limit: int) -> str | None:
    """`text` cut to at most `limit` UTF-8 bytes, or None when it already fits."""
    if len(text) * 4 <= limit:
        return None
    b = text.encode()
    if len(b) <= limit:
        return None
    return b[:limit].decode("utf-8", "ignore")


def provenance(attrs: dict[str, Any], top: dict[str, Any], path: str, offset: int, labels: dict[str, Any]) -> None:
    """attrs.file / attrs.offset / labels, never clashing with a key the line already has (the hub
    rejects a key given both at the top level and in attrs): the app's key keeps its name and the
    agent's goes to attrs["agent.file"] / attrs["agent.offset"]."""
    attrs["agent.file" if "file" in attrs or "file" in top else "file"] = path
    attrs["agent.offset" if "offset" in attrs or "offset" in top else "offset"] = offset
    for k, v in labels.items():
        if k not in attrs and k not in top:
            attrs[k] = v


_TRACEBACK = "Traceback (most recent call last):"
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$")


def service_from_path(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.split(".", 1)[0] or name


class FileEncoder:
    """Turns complete lines (bytes ending in b"\\n") of one file into encoded events."""

    def __init__(
        self,
        cfg: InputConfig,
        *,
        host: str,
        uid: str,
        path: str,
        ts: TimestampParser,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.uid = uid
        self.path = path
        self.service = cfg.service or service_from_path(path)
        self.labels = dict(cfg.labels)
        self.encoding = cfg.encoding
        self._clock = clock
        self._json = cfg.format == "json"
        self._parser = build_line_parser(cfg.format, cfg.regex, ts)
        ml = cfg.multiline
        self._start: re.Pattern[str] | None = None
        self._ml: MultilineConfig | None = None
        self._auto = False
        if ml is None and cfg.format in ("python", "log4j"):
            # automatic multiline: a line that does not look like a record header continues the last one
            self._start = header_pattern(cfg.format)
            self._ml = MultilineConfig(start="")
            self._auto = True  # a line starts a record iff the preset parses it: one regex pass per line
        elif isinstance(ml, MultilineConfig) and not self._json:
            self._start = re.compile(ml.start)
            self._ml = ml
        # pre-encoded constant parts of every event of this file (the hot paths splice bytes)
        self._b_id = f'"id":"{uid}-'.encode()
        self._b_host = b'"host":' + _dumps(host)
        self._b_service = b'"service":' + _dumps(self.service)
        self._b_attrs = b'"attrs":{"file":' + _dumps(path) + b',"offset":'
        self._b_labels = b"".join(b"," + _dumps(str(k)) + b":" + _dumps(v) for k, v in self.labels.items())
        self._group: list[str] = []
        self._group_fields: dict[str, Any] | None = None  # parse of the group's first line (auto mode)
        self._group_off = 0
        self._group_bytes = 0
        self._group_last = 0.0
        self.events = 0  # encoded so far (metrics)

    # -- state -------------------------------------------------------------------------------
    @property
    def pending_offset(self) -> int | None:
        """Offset of the first line held in a multiline group (not yet emitted), else None."""
        return self._group_off if self._group else None

    def feed(self, data: bytes, offset: int, out: list[bytes]) -> None:
        """`data` holds complete lines; `offset` is the file offset of its first byte."""
        if self._json:
            self._feed_json(data, offset, out)
        else:
            self._feed_text(data, offset, out)

    def poll(self, now: float, out: list[bytes]) -> None:
        """Emit a multiline group that has waited longer than its timeout."""
        if self._group and self._ml is not None and (now - self._group_last) * 1000 >= self._ml.timeout_ms:
            self._emit_group(out)

    def flush(self, out: list[bytes]) -> None:
        if self._group:
            self._emit_group(out)

    # -- JSON ----------------------------------------------------------------------------------
    def _feed_json(self, data: bytes, offset: int, out: list[bytes]) -> None:
        loads_, dumps_, JSONError = _loads, _dumps, _JSONError
        host, service, path, uid, labels = self.host, self.service, self.path, self.uid, self.labels
        now = round(self._clock(), 6)
        pos = offset
        append = out.append
        n = 0
        lines = data.split(b"\n")
        lines.pop()  # data ends with b"\n"
        b_id, b_attrs, b_labels = self._b_id, self._b_attrs, self._b_labels
        b_host, b_service = b"," + self._b_host, b"," + self._b_service
        b_ts = b',"ts":' + repr(now).encode()
        label_keys = tuple(labels)
        for raw in lines:
            lo = pos
            pos += len(raw) + 1
            try:
                obj = loads_(raw)
            except JSONError:
                obj = None
            if (
                type(obj) is dict
                and obj
                and "attrs" not in obj
                and "id" not in obj
                and "file" not in obj
                and "offset" not in obj
                and not (label_keys and any(k in obj for k in label_keys))
            ):
                # the common case (SDK lines): the line is valid JSON, so splice the agent's fields in
                # before its closing brace instead of re-serializing it (~2x cheaper per line)
                body = raw.rstrip()
                extra = b""
                if "host" not in obj:
                    extra = b_host
                if "service" not in obj:
                    extra += b_service
                if "ts" not in obj and "timestamp" not in obj and "@timestamp" not in obj and "time" not in obj:
                    extra += b_ts
                append(b'%s,%s%x"%s,%s%d%s}}' % (body[:-1], b_id, lo, extra, b_attrs, lo, b_labels))
                n += 1
                continue
            if type(obj) is dict:
                attrs = obj.get("attrs")
                if type(attrs) is not dict:
                    attrs = {} if attrs is None else {"attrs": attrs}
                if "id" in obj:  # an app's own "id" is kept, but never trusted as the idempotency key
                    attrs["id"] = obj["id"]
            else:
                text = raw.decode(self.encoding, "replace").rstrip("\r")
                if not text.strip():
                    continue
                obj = {"message": text}
                attrs = {"parse_error": True}
            obj["id"] = f"{uid}-{lo:x}"
            if "host" not in obj:
                obj["host"] = host
            if "service" not in obj:
                obj["service"] = service
            if "ts" not in obj and "timestamp" not in obj and "@timestamp" not in obj and "time" not in obj:
                obj["ts"] = now
            provenance(attrs, obj, path, lo, labels)
            obj["attrs"] = attrs
            append(dumps_(obj))
            n += 1
        self.events += n

    # -- text, presets, regex, multiline ---------------------------------------------------------
    def _feed_text(self, data: bytes, offset: int, out: list[bytes]) -> None:
        now = self._clock()
        text_all = data.decode(self.encoding, "replace")
        lines = text_all.split("\n")
        lines.pop()
        # pure ASCII/1-byte: char offsets == byte offsets
        sizes = None if len(text_all) == len(data) else [len(x) + 1 for x in data.split(b"\n")]
        pos = offset
        start, ml = self._start, self._ml
        raw_text = self._parser is None  # format = "text": no fields to extract, splice bytes
        b_now = repr(round(now, 6)).encode()
        for i, line in enumerate(lines):
            lo = pos
            pos += sizes[i] if sizes is not None else len(line) + 1
            if line.endswith("\r"):
                line = line[:-1]
            if ml is None or start is None:
                if line and not line.isspace():
                    if raw_text and len(line) < 65536:  # longer: the slow path enforces the hub's limits
                        out.append(
                            b'{%s%x",%s,%s,"ts":%s,"message":%s,%s%d%s}}'
                            % (
                                self._b_id,
                                lo,
                                self._b_host,
                                self._b_service,
                                b_now,
                                _dumps(line),
                                self._b_attrs,
                                lo,
                                self._b_labels,
                            )
                        )
                        self.events += 1
                    else:
                        self._emit(lo, line, None, now, out)
                continue
            if self._auto:
                fields = self._parser(line) if self._parser is not None else None
                is_start = fields is not None
            else:
                fields = None
                is_start = start.match(line) is not None
            if is_start or not self._group:
                if self._group:
                    self._emit_group(out)
                if not line or line.isspace():
                    continue  # blank line outside a group: nothing to ship
                self._group = [line]
                self._group_fields = fields
                self._group_off = lo
                self._group_bytes = len(line)
            else:
                self._group.append(line)
                self._group_bytes += len(line) + 1
            self._group_last = now
            if len(self._group) >= ml.max_lines or self._group_bytes >= ml.max_bytes:
                self._emit_group(out)

    def _emit_group(self, out: list[bytes]) -> None:
        group, self._group = self._group, []
        first = group[0]
        rest = "\n".join(group[1:]) if len(group) > 1 else None
        fields, self._group_fields = self._group_fields, None
        self._emit(self._group_off, first, rest, self._clock(), out, fields)

    def _emit(
        self, lo: int, line: str, rest: str | None, now: float, out: list[bytes], parsed: dict[str, Any] | None = None
    ) -> None:
        fields = parsed if parsed is not None else (self._parser(line) if self._parser is not None else None)
        if fields is None:
            ev: dict[str, Any] = {"message": line}
            attrs: dict[str, Any] = {"parse_error": True} if self._parser is not None else {}
        else:
            ev = fields
            attrs = ev.pop("attrs", None) or {}
        if rest is not None:
            ev["message"] = f"{ev.get('message', '')}\n{rest}"
            tb = rest.find(_TRACEBACK)
            if tb >= 0 or line.startswith(_TRACEBACK):
                stack = rest[tb:] if tb >= 0 else f"{line}\n{rest}"
                last = next((x for x in reversed(stack.split("\n")) if x and not x[0].isspace()), "")
                m = _EXC_LINE.match(last)
                if m is not None:
                    ev["error"] = {"type": m.group(1), "value": m.group(2) or "", "stack": stack}
            attrs["lines"] = rest.count("\n") + 2
        msg = ev.get("message")
        if msg and (cut := _cut(msg, _MESSAGE_MAX_BYTES)) is not None:
            ev["message"] = cut
            attrs["truncated"] = True
        for k in [k for k, v in attrs.items() if type(v) is str and len(v) * 4 > _ATTR_VALUE_MAX_BYTES]:
            if (cut := _cut(attrs[k], _ATTR_VALUE_MAX_BYTES)) is not None:
                attrs[k] = cut
                attrs["truncated"] = True
        ev["id"] = f"{self.uid}-{lo:x}"
        ev.setdefault("host", self.host)
        ev.setdefault("service", self.service)
        if "ts" not in ev:
            ev["ts"] = round(now, 6)
        provenance(attrs, ev, self.path, lo, self.labels)
        ev["attrs"] = attrs
        out.append(_dumps(ev))
        self.events += 1
