"""A seeded generator of realistic fleet data, for the lookup and aggregation benchmarks.

What a dozen-to-fifty-server fleet logs in a week, shaped where it matters for lookups:
- 50 hosts, 10 services; a request enters on one host and often calls services on others
  (1-3 hosts per request), ~5 events per request, so ~200k request ids per 1M events;
- 20k users with skewed activity (weight 1/(rank + 25)): the heaviest user makes ~0.6% of the
  requests (~1,200 in a week at 1M events), the median one ~7;
- messages from ~40 templates with parameters (paths, ids, numbers, punctuation), one common
  word in every access line (`GET`/`POST`), one rare template with the dotted word
  `vshard.leader` (~30 per 1M);
- levels skewed to info, ~1% error occurrences with stacks (30 types, so some dozens of groups),
  ~5% analytics events (`kind=event`) with `user_id`/`session_id` and properties;
- timestamps over `days` (default 7) ending now, oldest first.

Deterministic for (n, seed, now): ids are `f"{seed}-{i}"`, so a re-run stores nothing twice.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fleet", "generate"]

HOSTS = tuple(f"web-{i:02d}" for i in range(1, 51))
SERVICES = ("shop-web", "shop-api", "auth", "search", "billing", "inventory", "mailer", "gateway", "recommend", "media")
PATHS = (
    "/",
    "/products",
    "/products/{n}",
    "/cart",
    "/cart/add",
    "/checkout",
    "/account",
    "/search",
    "/api/v2/orders/{n}",
    "/static/app.{h}.js",
)
USERS = 20_000
_US = 1_000_000

# (template, weight): a request's inner lines. {n} number, {h} hex, {ip} address, {p} path.
_INNER = (
    ("query {svc} took {n} ms rows={n}", 10),
    ("cache miss for key product:{n}, falling back to db", 6),
    ("cache hit product:{n}", 8),
    ("calling {svc} at http://10.0.{n}.{n}:8080{p}", 6),
    ("session {h} loaded: {n} cart items", 5),
    ("user authenticated via sso provider=okta uid={n}", 3),
    ("rendered template product_detail.html in {n} ms", 4),
    ("retrying upstream request attempt={n} backoff={n}ms", 2),
    ("connection pool exhausted (size=20), waited {n} ms", 1),
    ("feature flag new_checkout evaluated: variant={v}", 2),
    ("queued email order_confirmation to user {n}", 1),
    ("elasticsearch query returned {n} hits in {n} ms", 2),
    ("payment authorized amount={n}.{n} EUR card=**** {n}", 1),
    ("inventory reserved sku-{n} qty={n}", 2),
    ("slow query: SELECT * FROM orders WHERE user_id = ? took {n} ms", 1),
    ("jwt token refreshed, expires in {n}s", 2),
    ("upstream 502 from {ip}, marking unhealthy", 1),
    ("GC pause {n} ms (young)", 1),
)
_RARE = "rebalance: vshard.leader moved bucket {n} to replica {ip}"  # ~30 per 1M events
_ERRORS = tuple(
    (t, m)
    for t, m in (
        ("KeyError", "'cart'"),
        ("TimeoutError", "payment provider timed out"),
        ("ValueError", "invalid quantity"),
        ("ConnectionError", "connection refused"),
        ("IntegrityError", "duplicate key value"),
        ("PermissionError", "not allowed"),
        ("ZeroDivisionError", "division by zero"),
        ("AttributeError", "'NoneType' object has no attribute 'id'"),
        ("JSONDecodeError", "Expecting value"),
        ("OperationalError", "database is locked"),
    )
    for _ in range(3)
)
_EVENTS = (("page_view", 10), ("add_to_cart", 3), ("checkout", 1), ("search", 4), ("signup", 0.3))


@dataclass
class Fleet:
    """Facts of one generated dataset that the benchmarks pick their lookups from."""

    n: int
    request_ids: list[str] = field(default_factory=list)  # a sample, for trace lookups
    requests_per_user: dict[str, int] = field(default_factory=dict)
    rare: int = 0  # events holding the rare word

    def users_by_activity(self) -> list[tuple[str, int]]:
        return sorted(self.requests_per_user.items(), key=lambda kv: -kv[1])


def _weights(k: int, offset: float) -> list[float]:
    cum, total = [], 0.0
    for i in range(k):
        total += 1 / (i + offset)
        cum.append(total)
    return cum


def _pick(rng: random.Random, cum: list[float]) -> int:
    return bisect.bisect_left(cum, rng.random() * cum[-1])


def _fill(rng: random.Random, tpl: str, svc: str) -> str:
    out = []
    for part in tpl.split("{"):
        if "}" not in part:
            out.append(part)
            continue
        key, rest = part.split("}", 1)
        out.append(
            {
                "n": str(rng.randint(1, 99_999)),
                "h": f"{rng.getrandbits(40):010x}",
                "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "p": rng.choice(PATHS).replace("{n}", str(rng.randint(1, 999))).replace("{h}", "9f8e7d"),
                "svc": svc,
                "v": rng.choice(("control", "treatment")),
            }[key]
            + rest
        )
    return "".join(out)


def _frames(rng: random.Random, typ: str) -> list[dict[str, Any]]:
    mods = ("shop.web.checkout", "shop.api.orders", "shop.db.session", "shop.payments.client")
    seed = sum(map(ord, typ))
    return [
        {
            "module": mods[(seed + j) % 4],
            "function": f"f{(seed * 7 + j) % 13}",
            "lineno": rng.randint(10, 400),
            "filename": mods[(seed + j) % 4].replace(".", "/") + ".py",
            "in_app": True,
        }
        for j in range(3)
    ]


def generate(
    n: int, seed: int = 1, now_us: int = 0, days: int = 7, fleet: Fleet | None = None
) -> Iterator[dict[str, Any]]:
    """`n` events, oldest first. `fleet`, when given, collects facts for picking lookups."""
    rng = random.Random(seed)
    user_cum = _weights(USERS, 25)
    inner_cum = list(itertools.accumulate(w for _, w in _INNER))
    event_cum = list(itertools.accumulate(w for _, w in _EVENTS))
    span = days * 86_400 * _US
    start = now_us - span
    step = span / max(n, 1)
    i = 0
    sessions: dict[int, str] = {}
    while i < n:
        t = int(start + i * step)
        u = _pick(rng, user_cum) if rng.random() < 0.8 else None
        user = f"u-{u:05d}" if u is not None else None
        if u is not None and (u not in sessions or rng.random() < 0.1):
            sessions[u] = f"s-{rng.getrandbits(48):012x}"
        session = sessions.get(u) if u is not None else None
        if rng.random() < 0.2:  # an analytics event between requests (~5% of events)
            name = _EVENTS[bisect.bisect_left(event_cum, rng.random() * event_cum[-1])][0]
            yield {
                "id": f"{seed}-{i}",
                "ts": t,
                "kind": "event",
                "name": name,
                "user_id": user,
                "session_id": session,
                "host": rng.choice(HOSTS),
                "service": "shop-web",
                "attrs": {"plan": rng.choice(("free", "pro", "team")), "price": round(rng.uniform(1, 300), 2)},
            }
            i += 1
            continue
        rid = f"req-{seed}-{rng.getrandbits(64):016x}"
        entry = rng.choice(HOSTS)
        hosts = [entry] + [rng.choice(HOSTS) for _ in range(rng.choice((0, 0, 1, 1, 2)))]
        trace = f"{rng.getrandbits(128):032x}"
        method = "GET" if rng.random() < 0.8 else "POST"
        path = rng.choice(PATHS).replace("{n}", str(rng.randint(1, 999))).replace("{h}", "9f8e7d")
        base = {
            "request_id": rid,
            "trace_id": trace,
            "user_id": user,
            "session_id": session,
            "env": "prod",
            "release": "shop@2.3.1",
        }
        k = rng.choice((2, 3, 4, 5, 6, 7, 8))
        dur = int(rng.lognormvariate(3.5, 0.9))
        for j in range(k):
            if i >= n:
                break
            edge = j in (0, k - 1)  # the request enters and answers on its entry host
            h = 0 if edge or len(hosts) == 1 else 1 + j % (len(hosts) - 1)
            host = hosts[h]
            svc = SERVICES[0] if edge else SERVICES[1 + (int(rid[-4:], 16) + h) % 9]
            ev: dict[str, Any] = {
                **base,
                "id": f"{seed}-{i}",
                "ts": t + j * dur * 100,
                "host": host,
                "service": svc,
                "logger": svc.replace("-", "."),
            }
            if j == 0:
                ev.update(level="info", message=f"{method} {path}")
            elif j == k - 1:
                status = 500 if rng.random() < 0.01 else 200
                ev.update(
                    level="error" if status == 500 else "info",
                    message=f"{method} {path} {status} {dur}ms",
                    attrs={"status": status, "duration_ms": dur, "path": path},
                )
            elif rng.random() < 0.015:  # ~1% of events: an error occurrence
                typ, msg = _ERRORS[rng.randrange(len(_ERRORS))]
                ev.update(
                    kind="error",
                    level="error",
                    message=f"{typ}: {msg}",
                    error={"type": typ, "value": msg, "stack": _frames(rng, typ + str(_ERRORS.index((typ, msg)) % 3))},
                )
            elif rng.random() < 0.00005:
                ev.update(level="warning", message=_fill(rng, _RARE, svc))
                if fleet is not None:
                    fleet.rare += 1
            else:
                tpl = _INNER[bisect.bisect_left(inner_cum, rng.random() * inner_cum[-1])][0]
                lvl = "debug" if rng.random() < 0.2 else ("warning" if rng.random() < 0.08 else "info")
                ev.update(level=lvl, message=_fill(rng, tpl, svc))
            yield ev
            i += 1
        if fleet is not None:
            if user is not None:
                fleet.requests_per_user[user] = fleet.requests_per_user.get(user, 0) + 1
            if len(fleet.request_ids) < 2000 and rng.random() < 0.05:
                fleet.request_ids.append(rid)
