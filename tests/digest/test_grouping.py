"""Grouping: what users call "the same bug" lands in one group, and nothing else does (v1, frozen,
and the current v2)."""

from __future__ import annotations

from typing import Any

from obshub.digest import Scrubber, digest
from obshub.digest.grouping.v1 import fingerprint, guess_in_app, normalize_message, title_and_culprit
from obshub.digest.traceback import parse_traceback
from obshub.events import normalize


def frame(module: str, function: str, lineno: int, ctx: str = "", in_app: bool | None = True) -> dict[str, Any]:
    f: dict[str, Any] = {
        "module": module,
        "function": function,
        "filename": module.replace(".", "/") + ".py",
        "lineno": lineno,
        "context_line": ctx,
    }
    if in_app is not None:
        f["in_app"] = in_app
    return f


def err(typ: str, value: str, *frames: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "kind": "error",
        "message": f"{typ}: {value}",
        "error": {"type": typ, "value": value, "stack": list(frames)},
        **extra,
    }


LIB = frame("starlette.routing", "handle", 74, "await self.app(scope)", in_app=False)


def test_same_bug_different_ids_and_line_numbers_is_one_group() -> None:
    a = err("KeyError", "'cart-1234'", LIB, frame("shop.checkout", "checkout", 57, 'cart = session["cart"]'))
    b = err("KeyError", "'cart-99'", LIB, frame("shop.checkout", "checkout", 61, 'cart = session["cart"]'))
    c = err(
        "KeyError",
        "'x'",
        frame("other.lib", "handle", 1, "x", in_app=False),
        frame("shop.checkout", "checkout", 80, 'cart = session["cart"]'),
    )  # different library frames
    assert fingerprint(a) == fingerprint(b) == fingerprint(c)


def test_different_call_sites_or_types_are_different_groups() -> None:
    base = err("KeyError", "'cart'", frame("shop.checkout", "checkout", 57, 'cart = session["cart"]'))
    other_fn = err("KeyError", "'cart'", frame("shop.checkout", "summary", 57, 'cart = session["cart"]'))
    other_line = err("KeyError", "'cart'", frame("shop.checkout", "checkout", 57, 'items = session["items"]'))
    other_type = err("LookupError", "'cart'", frame("shop.checkout", "checkout", 57, 'cart = session["cart"]'))
    fps = {fingerprint(x) for x in (base, other_fn, other_line, other_type)}
    assert len(fps) == 4


def test_chain_is_part_of_the_identity() -> None:
    inner = {
        "type": "ZeroDivisionError",
        "value": "division by zero",
        "stack": [frame("shop.total", "compute", 3, "a / b")],
    }
    plain = err("ValueError", "bad total", frame("shop.total", "total", 9, "raise ValueError"))
    chained = err("ValueError", "bad total", frame("shop.total", "total", 9, "raise ValueError"))
    chained["error"]["chain"] = [inner]
    assert fingerprint(plain) != fingerprint(chained)


def test_no_in_app_frames_uses_all_frames_and_no_frames_uses_masked_message() -> None:
    a = err("TimeoutError", "x", frame("httpx._client", "send", 1, in_app=False))
    b = err("TimeoutError", "y", frame("httpx._client", "send", 2, in_app=False))
    c = err("TimeoutError", "y", frame("httpx._client", "recv", 2, in_app=False))
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    m1 = err("PaymentError", "order 1234 declined for bob@x.com at 2026-01-02T10:00:00Z")
    m2 = err("PaymentError", "order 99 declined for amy@y.org at 2026-02-03T11:00:00Z")
    m3 = err("PaymentError", "order 99 refunded")
    assert fingerprint(m1) == fingerprint(m2) != fingerprint(m3)
    assert fingerprint({"message": "disk 91% full on /dev/sda1"}) == fingerprint(
        {"message": "disk 97% full on /dev/sda1"}
    )


def test_custom_fingerprint_and_default_expansion() -> None:
    e = err("RuntimeError", "boom", frame("shop.a", "f", 1))
    assert fingerprint({**e, "fingerprint": ["{{ default }}", "tenant-a"]}) != fingerprint(
        {**e, "fingerprint": ["{{ default }}", "tenant-b"]}
    )
    assert fingerprint({**e, "fingerprint": ["db-down"]}) == fingerprint(
        err("Other", "x", frame("z", "g", 2), fingerprint=["db-down"])
    )
    assert fingerprint({**e, "fingerprint": ["{{ default }}"]}) != fingerprint(e)  # custom is its own namespace


def test_masking() -> None:
    assert (
        normalize_message("user 42 from 10.1.2.3:8080 id 550e8400-e29b-41d4-a716-446655440000 at 0x7f3a")
        == "user <num> from <ip> id <uuid> at <hex>"
    )
    assert normalize_message("GET https://api.x.com/v1/orders/77?x=1 failed") == "GET <url> failed"
    assert normalize_message("sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08") == "sha <hash>"


def test_in_app_guess() -> None:
    assert guess_in_app({"filename": "/srv/shop/checkout.py", "module": "shop.checkout"})
    assert not guess_in_app({"filename": "/usr/lib/python3.11/site-packages/starlette/routing.py"})
    assert not guess_in_app({"module": "django.core.handlers"})
    assert not guess_in_app({"module": "java.util.HashMap"})


PY_TB = """{prefix}Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/starlette/routing.py", line 74, in handle
    await self.app(scope)
  File "{root}/shop/web/checkout.py", line {line}, in checkout
    cart = session["cart"]
KeyError: 'cart-{n}'
"""


def test_logged_tracebacks_group_like_structured_errors_across_hosts() -> None:
    evs = [
        normalize(
            {"level": "error", "host": h, "message": PY_TB.format(prefix="checkout failed\n", root=root, line=ln, n=n)},
            1,
        )
        for h, root, ln, n in (("web-1", "/srv/a", 57, 1), ("web-2", "/opt/b", 63, 2))
    ]
    groups = digest(evs, Scrubber())
    assert len(groups) == 1
    assert all(e["kind"] == "error" and e["group_id"] for e in evs)
    (g,) = groups.values()
    assert g.title == "KeyError: 'cart-1'" and g.culprit == "web.checkout in checkout"


def test_java_stack_trace_from_text() -> None:
    text = (
        "java.lang.IllegalStateException: order 77 failed\n\tat com.shop.Orders.place(Orders.java:42)\n"
        "\tat com.shop.Api.handle(Api.java:10)\nCaused by: java.sql.SQLTimeoutException: timeout\n"
        "\tat com.shop.Db.query(Db.java:99)\n\t... 2 more"
    )
    e = parse_traceback(text)
    assert e is not None and e["type"] == "java.lang.IllegalStateException"
    assert [f["function"] for f in e["stack"]] == ["handle", "place"]
    assert e["chain"][0]["type"] == "java.sql.SQLTimeoutException"
    again = parse_traceback(text.replace("42", "45").replace("77", "78"))
    assert fingerprint({"error": e}) == fingerprint({"error": again})


def test_title_and_culprit() -> None:
    e = err("KeyError", "'cart'", LIB, frame("shop.checkout", "checkout", 57))
    assert title_and_culprit(e) == ("KeyError: 'cart'", "KeyError", "shop.checkout in checkout")
    assert title_and_culprit({"message": "just text", "logger": "app"}) == ("just text", None, "app")


# -- v2 (current): one traceback, one group, whichever way it arrives ------------------------------

SDK_ERROR = {  # what obshub_sdk sends: module = __name__, qualified names, causes nearest first
    "type": "shop.errors.CheckoutError",
    "value": "checkout failed",
    "stack": [
        {
            "module": "shop.web.views",
            "function": "post",
            "filename": "/srv/app/shop/web/views.py",
            "lineno": 40,
            "in_app": True,
        },
        {
            "module": "shop.web.checkout",
            "function": "Cart.items",
            "filename": "/srv/app/shop/web/checkout.py",
            "lineno": 12,
            "in_app": True,
        },
    ],
    "chain": [
        {
            "type": "LookupError",
            "value": "no cart",
            "relation": "cause",
            "stack": [
                {
                    "module": "shop.web.checkout",
                    "function": "Cart.items",
                    "in_app": True,
                    "filename": "/srv/app/shop/web/checkout.py",
                    "lineno": 10,
                }
            ],
        },
        {
            "type": "KeyError",
            "value": "'cart'",
            "relation": "cause",
            "stack": [
                {
                    "module": "shop.web.session",
                    "function": "load",
                    "in_app": True,
                    "filename": "/srv/app/shop/web/session.py",
                    "lineno": 3,
                }
            ],
        },
    ],
}
TEXT = """Traceback (most recent call last):
  File "/opt/other/shop/web/session.py", line 3, in load
    return session["cart"]
KeyError: 'cart'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/opt/other/shop/web/checkout.py", line 10, in items
    return load(self.session)
LookupError: no cart

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/opt/other/shop/web/views.py", line 41, in post
    return Cart(session).items()
  File "/opt/other/shop/web/checkout.py", line 12, in items
    raise LookupError("no cart") from e
shop.errors.CheckoutError: checkout failed
"""


def test_v2_sdk_frames_traceback_text_and_sentry_frames_are_one_group() -> None:
    from obshub.digest.grouping import v2

    parsed = parse_traceback(TEXT)
    assert parsed is not None and [c["type"] for c in parsed["chain"]] == ["KeyError", "LookupError"]  # oldest first
    sentry = {
        "type": "CheckoutError",
        "value": "checkout failed",
        "module": "shop.errors",  # as sentry-sdk maps it
        "stack": [
            {
                "module": "shop.web.views",
                "function": "post",
                "abs_path": "/srv/app/shop/web/views.py",
                "filename": "shop/web/views.py",
                "lineno": 40,
                "context_line": "    return Cart(session).items()",
            },
            {
                "module": "shop.web.checkout",
                "function": "items",
                "filename": "shop/web/checkout.py",
                "abs_path": "/srv/app/shop/web/checkout.py",
                "lineno": 12,
                "context_line": '    raise LookupError("no cart") from e',
            },
        ],
        "chain": [SDK_ERROR["chain"][1], SDK_ERROR["chain"][0]],
    }
    fps = {v2.fingerprint({"error": e}) for e in (SDK_ERROR, parsed, sentry)}
    assert len(fps) == 1
    assert {v2.title_and_culprit({"error": e})[2] for e in (SDK_ERROR, parsed, sentry)} == {"web.checkout in items"}
    # v1 splits them: that is why v2 exists (v1 stays frozen for the groups it made)
    assert len({fingerprint({"error": e}) for e in (SDK_ERROR, parsed, sentry)}) == 3


def test_v2_still_tells_bugs_apart() -> None:
    from obshub.digest.grouping import v2

    def variant(**changes: Any) -> dict[str, Any]:
        top = dict(SDK_ERROR["stack"][1], **changes)
        return {"error": {**SDK_ERROR, "stack": [SDK_ERROR["stack"][0], top]}}

    base = v2.fingerprint(variant())
    assert v2.fingerprint(variant(lineno=99)) == base  # an edit above the line keeps the group
    assert v2.fingerprint(variant(function="Cart.total")) != base
    assert v2.fingerprint(variant(filename="/srv/app/shop/web/payment.py")) != base
    assert v2.fingerprint({"error": {**SDK_ERROR, "type": "shop.errors.PaymentError"}}) != base
    assert v2.fingerprint({"error": {**SDK_ERROR, "chain": SDK_ERROR["chain"][:1]}}) != base
    java = {
        "type": "java.lang.IllegalStateException",
        "stack": [{"module": "com.shop.Orders", "function": "place", "filename": "Orders.java", "in_app": True}],
    }
    other = {**java, "stack": [{**java["stack"][0], "module": "com.shop.Billing"}]}  # same file name, other class
    assert v2.fingerprint({"error": java}) != v2.fingerprint({"error": other})


def test_v2_without_frames_keeps_v1_components() -> None:
    from obshub.digest.grouping import v1, v2

    for ev in (
        {"message": "disk 91% full on /dev/sda1"},
        {"error": {"type": "PaymentError", "value": "order 1234 declined"}, "message": "x"},
        {"error": {"type": None, "value": "boom", "stack": "not a traceback"}},
    ):
        assert v2.default_components(ev) == v1.default_components(ev)


def test_digest_parses_every_form_of_traceback_text_and_only_for_errors() -> None:
    text = PY_TB.format(prefix="", root="/srv/a", line=57, n=1)
    forms = [
        {"host": "agent", "error": {"type": "KeyError", "value": "'cart-1'", "stack": text}},  # obshub_agent
        {"host": "as-error", "error": text},
        {"host": "message", "kind": "error", "message": "checkout failed\n" + text},
        {"host": "log", "level": "critical", "message": "checkout failed\n" + text},
    ]
    evs = [normalize(f, 1) for f in forms]
    groups = digest(evs, Scrubber())
    assert len(groups) == 1 and all(e["kind"] == "error" for e in evs)
    for e in evs:
        frames = e["error"]["stack"]
        assert [(f["function"], f["in_app"]) for f in frames] == [("handle", False), ("checkout", True)], e["host"]
    # analytics events and uptime results are never error occurrences, whatever their text
    # (kind=check is the hub's own: uptime results are normalized with own=True)
    others = [
        normalize({"kind": k, "level": "error", "name": "x", "message": text}, 1, own=True) for k in ("event", "check")
    ]
    assert digest(others, Scrubber()) == {} and [e["kind"] for e in others] == ["event", "check"]
    assert all(e["error"] is None and e["group_id"] is None for e in others)


def test_java_frames_with_module_prefixes_are_parsed() -> None:
    text = (
        "java.lang.IllegalStateException: order failed\n"
        "\tat app//com.shop.Orders.place(Orders.java:17)\n"
        "\tat com.foo.loader/foo@9.0/com.foo.Main.run(Main.java:101)\n"
        "\tat java.base/java.lang.reflect.Method.invoke(Method.java:569)\n"
        "\tat jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)\n"
    )
    e = parse_traceback(text)
    assert e is not None
    assert [(f["module"], f["function"], f["in_app"]) for f in e["stack"]] == [
        ("jdk.internal.reflect.NativeMethodAccessorImpl", "invoke0", False),
        ("java.lang.reflect.Method", "invoke", False),
        ("com.foo.Main", "run", True),
        ("com.shop.Orders", "place", True),
    ]


def test_card_numbers_in_traceback_text_are_masked() -> None:
    text = PY_TB.format(prefix="", root="/srv/a", line=57, n=1).replace(
        "KeyError: 'cart-1'", "KeyError: '4111 1111 1111 1111'"
    )
    (ev,) = evs = [normalize({"error": {"type": "KeyError", "value": "x", "stack": text}}, 1)]
    digest(evs, Scrubber())
    assert ev["error"]["value"] == "'[Filtered]'" and "4111" not in str(ev["error"])
