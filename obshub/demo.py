"""A realistic demo dataset, so a new user sees every view populated in the first minute.

Three hosts, two services (shop-web calls shop-api), 50 users browsing and buying over the last
two hours, analytics events, four weeks of product analytics (`_product`: signups by campaign, a
checkout A/B test with a planted lift, returning logins), one error burst, and the seed bug this
project exists for: user `u-0007` adds to cart on web-1, the next request lands on web-2, whose
in-memory session store has never seen the cart -> KeyError. The ids of that story are fixed
(`DEMO_STORY`) so the docs and browser tests can link to it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["CLOCK_SKEW_US", "DEMO_STORY", "PRODUCT", "ProductPlan", "generate"]

HOSTS = ("web-1", "web-2", "web-3")
SERVICES = ("shop-web", "shop-api")
PATHS = ("/", "/products", "/products/42", "/cart", "/cart/add", "/checkout", "/account")
DEMO_STORY = {
    "user_id": "u-0007",
    "cross_host_request": "req-demo-cross-host",
    "cart_request": "req-demo-cart-add",
    "failing_request": "req-demo-cart-lost",
    # OpenTelemetry-shaped: shop-web on web-2 calls shop-api on web-3, whose database query is
    # slow and whose payment call raises; the trace page draws it as a span waterfall.
    "otel_trace": "0af7651916cd43dd8448eb211c80319c",
}
# web-2's clock runs 1.5 s slow: its raw timestamps put the api call *before* the web request
# that made it; the hub's skew estimate (from X-Obshub-Sent-At) puts them back in order.
CLOCK_SKEW_US = {"web-2": -1_500_000}
_US = 1_000_000
_DAY = 86_400 * _US


# The product analytics story (`_product`), planted so the Funnels, Retention and Experiments tabs
# show it: 1,600 users sign up over 27 days (inside the default 30-day event retention), each
# with a `campaign`; the `checkout` event carries the A/B arm `checkout_flow`, and `new` converts
# to `purchase` 9 points more often than `control` (41% -> 50%; ~300 users per arm: p < 0.05).
@dataclass(frozen=True)
class ProductPlan:
    users: int = 1600
    days: int = 27
    campaigns: tuple[tuple[str, float], ...] = (
        ("search", 0.35),
        ("newsletter", 0.3),
        ("social", 0.2),
        ("partner", 0.15),
    )
    cart_rate: tuple[tuple[str, float], ...] = (
        ("search", 0.75),
        ("newsletter", 0.65),
        ("social", 0.45),
        ("partner", 0.6),
    )
    checkout_rate: float = 0.75
    purchase_rate: tuple[tuple[str, float], ...] = (("control", 0.41), ("new", 0.50))


PRODUCT = ProductPlan()


def _frames(*calls: tuple[str, str, int]) -> list[dict[str, Any]]:
    return [
        {
            "module": m,
            "function": f,
            "filename": m.replace(".", "/") + ".py",
            "lineno": ln,
            "in_app": m.startswith("shop"),
        }
        for m, f, ln in calls
    ]


def _request(
    rng: random.Random, now: int, t: int, user: str, session: str, host: str, n: int, run: str
) -> list[dict[str, Any]]:
    rid = f"req-{run}-{n:05d}"
    trace = f"{rng.getrandbits(128):032x}"
    path = rng.choice(PATHS)
    dur = int(rng.lognormvariate(3.5, 0.8))
    base = {
        "request_id": rid,
        "trace_id": trace,
        "user_id": user,
        "session_id": session,
        "host": host,
        "env": "prod",
        "release": "shop@1.4.2",
    }
    evs = [
        {
            **base,
            "ts": t,
            "service": "shop-web",
            "logger": "shop.web",
            "level": "info",
            "message": f"GET {path}",
            "attrs": {"http": {"method": "GET", "path": path}},
        },
        {
            **base,
            "ts": t + dur * 400,
            "service": "shop-api",
            "logger": "shop.api",
            "level": "debug",
            "message": f"query products took {dur // 2} ms",
            "attrs": {"db": {"rows": rng.randint(1, 40)}},
        },
        {
            **base,
            "ts": t + dur * 1000,
            "service": "shop-web",
            "logger": "shop.access",
            "level": "info",
            "message": f"GET {path} 200 {dur}ms",
            "attrs": {"status": 200, "duration_ms": dur, "path": path},
        },
    ]
    if rng.random() < 0.15:
        evs.append(
            {
                **base,
                "ts": t + dur * 500,
                "service": "shop-api",
                "logger": "shop.api.cache",
                "level": "warning",
                "message": f"cache miss for product {rng.randint(1, 500)}, falling back to db",
            }
        )
    return evs


def generate(now_us: int, run: str = "demo", seed: int = 7) -> list[dict[str, Any]]:
    """Every demo event (client-side form: what an agent/SDK would send), oldest first."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    users = [f"u-{i:04d}" for i in range(1, 51)]
    start = now_us - 2 * 3600 * _US
    n = 0
    for user in users:
        session = f"s-{rng.getrandbits(48):012x}"
        t = start + rng.randint(0, 100 * 60) * _US
        plan = rng.choice(("free", "pro", "team"))
        out.append(
            {
                "ts": t,
                "kind": "event",
                "name": "login",
                "user_id": user,
                "session_id": session,
                "host": rng.choice(HOSTS),
                "service": "shop-web",
                "attrs": {"plan": plan, "method": rng.choice(("password", "sso"))},
            }
        )
        for _ in range(rng.randint(2, 6)):
            n += 1
            out.extend(_request(rng, now_us, t, user, session, rng.choice(HOSTS), n, run))
            if rng.random() < 0.4:
                out.append(
                    {
                        "ts": t + 1000,
                        "kind": "event",
                        "name": "add_to_cart",
                        "user_id": user,
                        "session_id": session,
                        "host": rng.choice(HOSTS),
                        "service": "shop-web",
                        "attrs": {
                            "plan": plan,
                            "product_id": rng.randint(1, 500),
                            "price": round(rng.uniform(3, 120), 2),
                        },
                    }
                )
            t += rng.randint(5, 240) * _US
        if rng.random() < 0.3:
            out.append(
                {
                    "ts": t,
                    "kind": "event",
                    "name": "checkout",
                    "user_id": user,
                    "session_id": session,
                    "host": rng.choice(HOSTS),
                    "service": "shop-web",
                    "attrs": {
                        "plan": plan,
                        "amount": round(rng.uniform(10, 400), 2),
                        "currency": "EUR",
                        "checkout_flow": _arm(user),
                    },
                }
            )
    out.extend(_product(random.Random(seed + 1), now_us - 3 * 3600 * _US))
    out.extend(_error_burst(rng, now_us - 40 * 60 * _US))
    out.extend(_story(now_us - 25 * 60 * _US))
    out.extend(_otel_trace(now_us - 30 * 60 * _US))
    out.sort(key=lambda e: e["ts"])
    for i, e in enumerate(out):
        e.setdefault("id", f"{run}-{i:06d}")
        e["ts"] += CLOCK_SKEW_US.get(e.get("host", ""), 0)  # what that host's clock wrote
    return out


def _arm(user: str) -> str:
    """The user's A/B arm: by the parity of its number (a stable 50/50 split, no random draw)."""
    return "new" if int(user[2:]) % 2 else "control"


def _product(rng: random.Random, end: int) -> Iterator[dict[str, Any]]:
    """Users `p-0001`... signing up over `PRODUCT.days` before `end`: signup (campaign, plan)
    -> add_to_cart (minutes to ~2 days later: some fall outside a 1-day funnel window) ->
    checkout (the A/B arm) -> purchase; and returning logins, daily and weekly, that decay."""
    p = PRODUCT
    first = end - p.days * _DAY
    names, weights = [c for c, _ in p.campaigns], [w for _, w in p.campaigns]
    cart_rate, purchase_rate = dict(p.cart_rate), dict(p.purchase_rate)
    for i in range(1, p.users + 1):
        user = f"p-{i:04d}"
        campaign = rng.choices(names, weights)[0]
        plan = rng.choices(("free", "pro", "team"), (6, 3, 1))[0]
        t = first + rng.randrange(p.days * _DAY)
        base = {"user_id": user, "session_id": f"ps-{i:04d}", "host": HOSTS[i % 3], "service": "shop-web"}
        evs: list[dict[str, Any]] = [{**base, "ts": t, "name": "signup", "attrs": {"campaign": campaign, "plan": plan}}]
        if rng.random() < cart_rate[campaign]:
            t += int(
                rng.choice((rng.uniform(60, 3600), rng.uniform(3600, 20 * 3600), rng.uniform(1, 2) * 86_400)) * _US
            )
            evs.append({**base, "ts": t, "name": "add_to_cart", "attrs": {"plan": plan, "price": rng.randint(5, 120)}})
            if rng.random() < p.checkout_rate:
                arm = _arm(user)
                t += rng.randint(60, 3600) * _US
                evs.append({**base, "ts": t, "name": "checkout", "attrs": {"plan": plan, "checkout_flow": arm}})
                if rng.random() < purchase_rate[arm]:
                    t += rng.randint(30, 1800) * _US
                    amount = rng.randint(10, 400)
                    evs.append({**base, "ts": t, "name": "purchase", "attrs": {"amount": amount, "currency": "EUR"}})
        t0: int = evs[0]["ts"]
        for day in range(1, 15):  # daily returns, decaying
            if rng.random() < 0.3 / day**0.5:
                evs.append(
                    {**base, "ts": t0 + day * _DAY + rng.randrange(_DAY), "name": "login", "attrs": {"plan": plan}}
                )
        for week in range(2, 4):  # and weekly ones beyond the second week
            if rng.random() < 0.35 / week**0.5:
                evs.append(
                    {
                        **base,
                        "ts": t0 + week * 7 * _DAY + rng.randrange(7 * _DAY),
                        "name": "login",
                        "attrs": {"plan": plan},
                    }
                )
        for e in evs:
            if e["ts"] < end:  # a future return is not in the data yet
                yield {**e, "kind": "event"}


def _error_burst(rng: random.Random, t0: int) -> Iterator[dict[str, Any]]:
    """40 payment failures on web-3 within two minutes: the provider timed out."""
    for i in range(40):
        rid = f"req-burst-{i:03d}"
        t = t0 + rng.randint(0, 120) * _US
        user = f"u-{rng.randint(1, 50):04d}"
        yield {
            "ts": t,
            "host": "web-3",
            "service": "shop-api",
            "level": "error",
            "kind": "error",
            "request_id": rid,
            "user_id": user,
            "logger": "shop.api.payments",
            "env": "prod",
            "message": f"payment provider timed out after {rng.randint(5000, 5400)} ms "
            f"(order {rng.randint(10000, 99999)})",
            "error": {
                "type": "TimeoutError",
                "value": "payment provider timed out",
                "stack": _frames(
                    ("shop.api.routes", "checkout", 88),
                    ("shop.api.payments", "charge", 131),
                    ("httpx._client", "send", 1014),
                ),
            },
        }
        yield {
            "ts": t - 5_000_100,
            "host": "web-3",
            "service": "shop-api",
            "level": "info",
            "request_id": rid,
            "user_id": user,
            "logger": "shop.api.payments",
            "message": "charging card via provider",
        }


def _story(t: int) -> list[dict[str, Any]]:
    """The seed bug: same user, two servers in a row, the second has no cart in its session."""
    s = DEMO_STORY
    user, session = s["user_id"], "s-demo-0007"
    base = {"user_id": user, "session_id": session, "env": "prod", "release": "shop@1.4.2"}
    cross = s["cross_host_request"]
    cart, lost = s["cart_request"], s["failing_request"]
    story = [
        # One request crossing hosts: shop-web on web-1 calls shop-api on web-2.
        {
            **base,
            "ts": t,
            "host": "web-1",
            "service": "shop-web",
            "request_id": cross,
            "trace_id": cross,
            "message": "GET /products/42",
            "logger": "shop.web",
        },
        {
            **base,
            "ts": t + 120_000,
            "host": "web-2",
            "service": "shop-api",
            "request_id": cross,
            "trace_id": cross,
            "message": "load product 42 from db",
            "logger": "shop.api",
            "level": "debug",
        },
        {
            **base,
            "ts": t + 310_000,
            "host": "web-2",
            "service": "shop-api",
            "request_id": cross,
            "trace_id": cross,
            "message": "GET /internal/products/42 200 190ms",
            "logger": "shop.access",
            "attrs": {"status": 200, "duration_ms": 190},
        },
        {
            **base,
            "ts": t + 400_000,
            "host": "web-1",
            "service": "shop-web",
            "request_id": cross,
            "trace_id": cross,
            "message": "GET /products/42 200 400ms",
            "logger": "shop.access",
            "attrs": {"status": 200, "duration_ms": 400},
        },
        # Request 2 on web-1: the cart is saved in web-1's local session store.
        {
            **base,
            "ts": t + 5 * _US,
            "host": "web-1",
            "service": "shop-web",
            "request_id": cart,
            "message": "POST /cart/add product=42",
            "logger": "shop.web",
        },
        {
            **base,
            "ts": t + 5 * _US + 3000,
            "host": "web-1",
            "service": "shop-web",
            "request_id": cart,
            "message": "session cart saved (local store)",
            "logger": "shop.session",
            "attrs": {"cart_items": 1},
        },
        {
            **base,
            "ts": t + 5 * _US + 4000,
            "kind": "event",
            "name": "add_to_cart",
            "host": "web-1",
            "service": "shop-web",
            "request_id": cart,
            "attrs": {"product_id": 42, "price": 19.9, "plan": "pro"},
        },
        # Request 3 lands on web-2 (load balancer), whose session store has never seen the cart.
        {
            **base,
            "ts": t + 9 * _US,
            "host": "web-2",
            "service": "shop-web",
            "request_id": lost,
            "message": "POST /checkout",
            "logger": "shop.web",
        },
        {
            **base,
            "ts": t + 9 * _US + 2000,
            "host": "web-2",
            "service": "shop-web",
            "request_id": lost,
            "message": "session loaded: 0 cart items",
            "logger": "shop.session",
            "level": "warning",
        },
        {
            **base,
            "ts": t + 9 * _US + 2500,
            "host": "web-2",
            "service": "shop-web",
            "request_id": lost,
            "kind": "error",
            "level": "error",
            "logger": "shop.web.checkout",
            "message": "KeyError: 'cart'",
            "error": {
                "type": "KeyError",
                "value": "'cart'",
                "stack": _frames(
                    ("starlette.routing", "handle", 74),
                    ("shop.web.checkout", "checkout", 57),
                    ("shop.web.session", "get_cart", 23),
                ),
            },
        },
        {
            **base,
            "ts": t + 9 * _US + 3000,
            "host": "web-2",
            "service": "shop-web",
            "request_id": lost,
            "message": "POST /checkout 500 3ms",
            "logger": "shop.access",
            "level": "error",
            "attrs": {"status": 500, "duration_ms": 3},
        },
    ]
    for i, e in enumerate(story):
        e["id"] = f"demo-story-{i}"  # fixed: re-running the demo does not duplicate the story
    return story


def _span(
    t: int,
    host: str,
    service: str,
    span_id: str,
    parent: str | None,
    name: str,
    kind: str,
    ms: float,
    span_status: str = "unset",
    **attrs: Any,
) -> dict[str, Any]:
    """A span as OTLP ingest stores it (obshub/ingest/otlp/, docs/otlp.md: kind=span)."""
    a: dict[str, Any] = {"span.kind": kind, "span.status": span_status, "duration_ms": ms, **attrs}
    if parent:
        a["span.parent_id"] = parent
    return {
        "ts": t,
        "host": host,
        "service": service,
        "kind": "span",
        "name": name,
        "message": name,
        "level": "error" if span_status == "error" else "info",
        "span_id": span_id,
        "attrs": a,
    }


def _otel_trace(t: int) -> list[dict[str, Any]]:
    """POST /checkout through two services: 1.45 s, 900 ms of it one database query, then the
    payment provider times out (an exception on the `charge card` span). web-2's clock is slow
    (CLOCK_SKEW_US), so on raw time shop-web's spans start after the shop-api spans they caused.
    One span's parent was never sent (sampled out): it shows as an orphan."""
    ms = 1000
    base = {"trace_id": DEMO_STORY["otel_trace"], "env": "prod", "release": "shop@1.4.2", "user_id": "u-0042"}
    web, api = ("web-2", "shop-web"), ("web-3", "shop-api")
    out = [
        _span(
            t,
            *web,
            "a1a1a1a1a1a1a1a1",
            None,
            "POST /checkout",
            "server",
            1450,
            "error",
            method="POST",
            path="/checkout",
            status=500,
        ),
        _span(t + 5 * ms, *web, "a2a2a2a2a2a2a2a2", "a1a1a1a1a1a1a1a1", "render cart", "internal", 30),
        _span(
            t + 40 * ms, *web, "a3a3a3a3a3a3a3a3", "a1a1a1a1a1a1a1a1", "POST /internal/orders", "client", 1400, "error"
        ),
        _span(
            t + 45 * ms,
            *api,
            "b1b1b1b1b1b1b1b1",
            "a3a3a3a3a3a3a3a3",
            "POST /internal/orders",
            "server",
            1390,
            "error",
            method="POST",
            path="/internal/orders",
            status=502,
        ),
        _span(
            t + 50 * ms,
            *api,
            "b2b2b2b2b2b2b2b2",
            "b1b1b1b1b1b1b1b1",
            "SELECT orders",
            "client",
            900,
            **{"db.system": "postgresql", "db.statement": "SELECT * FROM orders WHERE user_id = $1"},
        ),
        _span(
            t + 960 * ms,
            *api,
            "b3b3b3b3b3b3b3b3",
            "b1b1b1b1b1b1b1b1",
            "charge card",
            "client",
            470,
            "error",
            **{"span.status_message": "payment provider timed out"},
        ),
        _span(t + 1200 * ms, *api, "c1c1c1c1c1c1c1c1", "ffffffff00000001", "publish order.failed", "producer", 12),
        {
            "ts": t + 951 * ms,
            "host": api[0],
            "service": api[1],
            "span_id": "b2b2b2b2b2b2b2b2",
            "level": "warning",
            "logger": "shop.api.db",
            "message": "slow query: 900 ms (SELECT orders)",
        },
        {
            "ts": t + 1430 * ms,
            "host": api[0],
            "service": api[1],
            "span_id": "b3b3b3b3b3b3b3b3",
            "kind": "error",
            "level": "error",
            "name": "charge card",
            "logger": "shop.api.payments",
            "message": "payment provider timed out after 470 ms (order 99120)",
            "error": {
                "type": "TimeoutError",
                "value": "payment provider timed out",
                "stack": _frames(
                    ("shop.api.routes", "checkout", 88),
                    ("shop.api.payments", "charge", 131),
                    ("httpx._client", "send", 1014),
                ),
            },
        },
        {
            "ts": t + 1446 * ms,
            "host": web[0],
            "service": web[1],
            "span_id": "a1a1a1a1a1a1a1a1",
            "level": "error",
            "logger": "shop.access",
            "message": "POST /checkout 500 1450ms",
            "attrs": {"status": 500},
        },
    ]
    for i, e in enumerate(out):
        e.update(base)
        e["id"] = f"demo-otel-{i}"  # fixed, like the story's
    return out
