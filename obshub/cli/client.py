"""The commands that talk HTTP to a running hub: `demo`, `search`, `trace`, `export`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from obshub.cli.args import _die
from obshub.errors import ConfigError

if TYPE_CHECKING:
    import httpx


def _client(args: argparse.Namespace) -> httpx.Client:
    import httpx

    if not args.token:
        raise ConfigError("--token (or OBSHUB_TOKEN) is required")
    return httpx.Client(base_url=args.url.rstrip("/"), headers={"Authorization": f"Bearer {args.token}"}, timeout=30)


def _get(args: argparse.Namespace, path: str, params: dict[str, Any]) -> dict[str, Any] | int:
    import httpx

    try:
        with _client(args) as c:
            r = c.get(path, params={k: v for k, v in params.items() if v is not None})
    except httpx.HTTPError as e:
        return _die(f"cannot reach the hub at {args.url}: {e}", 1)
    if r.status_code != 200:
        return _die(_refusal(r, params.get("q")), 1)
    data: dict[str, Any] = r.json()
    return data


def _refusal(r: httpx.Response, query: str | None = None) -> str:
    """'hub answered <status>: <its error>', with a caret under a query's bad column."""
    try:
        err = r.json()
    except ValueError:
        err = None
    if isinstance(err, dict):
        msg = str(err.get("error", r.text))
        if err.get("column"):
            msg += f"\n  {query or ''}\n  {' ' * (err['column'] - 1)}^"
    else:  # not the hub's JSON (a proxy's page, say)
        msg = r.text[:300]
    retry = r.headers.get("retry-after")
    return f"hub answered {r.status_code}: {msg}" + (f" (retry after {retry} s)" if retry else "")


def _line(e: dict[str, Any]) -> str:
    ids = " ".join(f"{k}={e[k]}" for k in ("request_id", "user_id") if k in e)
    cols = f"{e['ts']}  {e.get('host', '-'):<10} {e.get('service', '-'):<10} {e['level']:<8}"
    return f"{cols} {e.get('message', '')}  {ids}".rstrip()


def _search(args: argparse.Namespace) -> int:
    data = _get(args, "/api/v1/search", {"q": args.query, "from": args.from_, "to": args.to, "limit": args.limit})
    if isinstance(data, int):
        return data
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for e in reversed(data["events"]):  # oldest at the top, like a log file
        print(_line(e))
    if not data["events"]:
        print(f"no events match in the range {args.from_} .. {args.to or 'now'}", file=sys.stderr)
    elif data["next_cursor"]:
        print(
            f"(showing the newest {len(data['events'])}; raise --limit or narrow the query for more)", file=sys.stderr
        )
    return 0


def _trace(args: argparse.Namespace) -> int:
    # Encoded whole: an id is anything an app logged, and `?`, `#` or `%` in it would end or
    # change the path (`a/b?c` asked for trace `a/b`). The route decodes it back.
    data = _get(args, f"/api/v1/trace/{quote(args.id, safe='')}", {})
    if isinstance(data, int):
        return data
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    if not data["events"]:
        print(f"no events with request_id or trace_id {args.id!r}", file=sys.stderr)
        return 1
    events, hosts = data["events"], data["hosts"]
    skew = {h: ms for h, ms in (data.get("skew_ms") or {}).items() if ms}
    if skew:
        from obshub.events import parse_ts

        # Order on corrected time: raw time minus the host's estimated clock offset.
        events = sorted(events, key=lambda e: parse_ts(e["ts"]) - skew.get(e.get("host"), 0) * 1000)
        hosts = list(dict.fromkeys(e["host"] for e in events if e.get("host")))
    print(
        f"trace {data['id']}: {len(events)} events, hosts {', '.join(hosts)}, "
        f"services {', '.join(data['services'])}, {data['error_count']} errors"
    )
    if skew:
        print(
            "ordered on corrected time; estimated clock skew: "
            + ", ".join(f"{h} {ms:+d} ms" for h, ms in sorted(skew.items()))
        )
    for e in events:
        print(_line(e))
    return 0


def _demo(args: argparse.Namespace) -> int:
    import httpx

    from obshub.demo import CLOCK_SKEW_US, DEMO_STORY, generate
    from obshub.events import now_us

    now = now_us()
    events = generate(now, run=f"demo{now // 60_000_000}")
    batch = 500
    sent = accepted = dup = 0
    width = 30
    # One stream per host, as each host's agent would send it, stamped with that host's clock.
    chunks = []
    for host in sorted({e.get("host", "") for e in events}):
        mine = [e for e in events if e.get("host", "") == host]
        chunks += [(host, mine[i : i + batch]) for i in range(0, len(mine), batch)]
    with _client(args) as c:
        for host, chunk in chunks:
            body = "\n".join(json.dumps(e) for e in chunk).encode()
            sent_at = (now_us() + CLOCK_SKEW_US.get(host, 0)) / 1e6
            try:
                r = c.post(
                    "/api/v1/ingest",
                    content=body,
                    headers={"Content-Type": "application/x-ndjson", "X-Obshub-Sent-At": f"{sent_at:.6f}"},
                )
            except httpx.HTTPError as e:
                return _die(f"cannot reach the hub at {args.url}: {e}", 1)
            if r.status_code != 200:
                if sent:
                    print(file=sys.stderr)  # end the progress line
                return _die(_refusal(r), 1)
            res = r.json()
            accepted += res["accepted"]
            dup += res["duplicates"]
            sent += len(chunk)
            done = sent * width // len(events)
            print(
                f"\r[{'#' * done}{'.' * (width - done)}] {sent}/{len(events)} events",
                end="",
                file=sys.stderr,
                flush=True,
            )
    print(file=sys.stderr)
    print(f"sent {sent} events: {accepted} stored, {dup} already there")
    print(f"try: obshub trace {DEMO_STORY['cross_host_request']}   (one request, two hosts)")
    print(f"     open {args.url}/users/{DEMO_STORY['user_id']}   (the host switch that loses the cart)")
    return 0


# -- export: every match of a query, streamed from GET /api/v1/export (obshub/query/export.py)


class _ExportProgress:
    """Counts the rows streamed so far and reports them on stderr: a line rewritten in place every
    0.5 s on a terminal, a line every 10 s otherwise (logs of cron jobs stay short)."""

    def __init__(self, csv: bool) -> None:
        self.csv = csv
        self.tty = sys.stderr.isatty()
        self.every = 0.5 if self.tty else 10.0
        self.started = self.last = time.monotonic()
        self.lines = 0  # CSV: record ends (newlines outside quotes), the header included
        self.in_quotes = False  # CSV: a quoted cell (a message with newlines, say) spans chunks

    @property
    def rows(self) -> int:
        return max(0, self.lines - 1) if self.csv else self.lines

    def feed(self, data: bytes) -> None:
        if not self.csv:
            self.lines += data.count(b"\n")
        else:
            # A newline ends a record only outside quotes; quotes inside a cell come doubled, so the
            # parity of the quotes seen so far says whether we are inside one.
            *ended, tail = data.split(b"\n")
            for seg in ended:
                self.in_quotes ^= seg.count(b'"') % 2 == 1
                if not self.in_quotes:
                    self.lines += 1
            self.in_quotes ^= tail.count(b'"') % 2 == 1
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            print(
                ("\r" if self.tty else "") + self._status(now),
                end="" if self.tty else "\n",
                file=sys.stderr,
                flush=True,
            )

    def _status(self, now: float) -> str:
        took = max(now - self.started, 1e-6)
        return f"exported {self.rows:,} rows in {took:.1f} s ({self.rows / took:,.0f} rows/s)"

    def done(self, suffix: str = "") -> None:
        print(("\r" if self.tty else "") + self._status(time.monotonic()) + suffix, file=sys.stderr, flush=True)


def _export(args: argparse.Namespace) -> int:
    import tempfile
    from typing import BinaryIO

    import httpx

    params = {
        "q": args.query,
        "from": args.from_,
        "to": args.to,
        "format": args.format,
        "columns": args.columns,
        "spreadsheet": "1" if args.spreadsheet else None,
    }
    tmp = None
    sink: BinaryIO
    if args.output:
        target = os.path.abspath(args.output)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.", suffix=".part")
        sink = os.fdopen(fd, "wb")
    else:
        sink = sys.stdout.buffer
    progress = _ExportProgress(args.format == "csv")
    complete = answered = False
    try:
        with (
            _client(args) as c,
            c.stream(
                "GET",
                "/api/v1/export",
                params={k: v for k, v in params.items() if v is not None},
                timeout=httpx.Timeout(30, read=600),
            ) as r,
        ):
            if r.status_code != 200:
                r.read()
                return _die(_refusal(r, args.query), 1)
            answered = True
            for data in r.iter_bytes():
                sink.write(data)
                progress.feed(data)
        sink.flush()
        if tmp is not None:
            os.fsync(sink.fileno())
        complete = True
    except httpx.HTTPError as e:
        if not answered:
            return _die(f"cannot reach the hub at {args.url}: {e}", 1)
        progress.done()
        where = f"{args.output} left untouched" if tmp is not None else "stdout holds a partial export"
        return _die(
            f"export incomplete: the stream broke after {progress.rows:,} rows ({e}; the hub's log says why); {where}",
            1,
        )
    except BrokenPipeError:  # `obshub export ... | head`: the reader is gone, nothing left to do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if tmp is not None:
            sink.close()
            if complete:
                mask = os.umask(0)
                os.umask(mask)
                os.chmod(tmp, 0o666 & ~mask)  # as `> FILE` would create it, not mkstemp's 0600
                os.replace(tmp, os.path.abspath(args.output))
            else:
                os.unlink(tmp)
    progress.done(f" to {args.output}" if args.output else "")
    return 0
