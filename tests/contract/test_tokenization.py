"""One rule for words on both stores (docs/api.md, "Words"): a word is a run of letters, digits
(any script) and `_`; every other character separates words; case and accents are ignored. A
query word with punctuation is its words in a row, quoted or not.

Before, OpenSearch's standard analyzer kept `vshard.leader`, `10.0.0.1` and `don't` whole while
SQLite's FTS5 split them, so `vshard` found 22 events on one store and 28 on the other.
"""

from __future__ import annotations

from tests.hubproc import LiveHub

MESSAGES = {
    "dotted": "rebalance: vshard.leader moved bucket 7 to replica 10.0.0.1",
    "plain": "vshard reconfigured",
    "underscore": "loaded mod_jk for user_id=42",
    "path": "GET /api/v2/orders/17 200",
    "apostrophe": "don't retry: user's cart is empty",
    "accents": "Café naïve résumé",
    "combining": "cafe\u0301 decomposed",
    "uuid": "request 3fa85f64-5717-4562-b3fc-2c963f66afa6 failed",
    "hyphen": "timed-out after 30s",
    "cjk": "日本語テキスト 中文",
    "dunder": "x__y and __init__ or __",
    "host": "node-7.eu-west.example.com:9200 up",
    "windows": "path C:\\Program Files\\obshub\\logs",
    "case": "UPPER lower MiXeD",
    "money": "price=12.50€ total",
    "long word": "z" * 3000 + " tail",  # longer than a search index keeps whole
    "long run": "頭" * 12_000 + " endword",  # 36 KB without a separator: still stored
    "greek": "ΣΦΑΛΜΑ δίσκου",
}
IDS = {"by id": {"message": "unrelated", "request_id": "vshard"}}

CASES: list[tuple[str, set[str]]] = [
    ("vshard", {"dotted", "plain", "by id"}),  # a word, or an id field equal to it
    ("leader", {"dotted"}),
    ("vshard.leader", {"dotted"}),
    ('"vshard.leader"', {"dotted"}),
    ('"vshard leader"', {"dotted"}),
    ('"leader vshard"', set()),
    ("10.0.0.1", {"dotted"}),
    ("10", {"dotted"}),
    ('"0.0"', {"dotted"}),
    ("mod_jk", {"underscore"}),
    ("mod", set()),  # `_` joins
    ("user_id", {"underscore"}),
    ("user", {"apostrophe"}),
    ("42", {"underscore"}),
    ("/api/v2", {"path"}),
    ("v2", {"path"}),
    ("api/v2/orders", {"path"}),
    ('"orders 17"', {"path"}),
    ("don't", {"apostrophe"}),
    ("don", {"apostrophe"}),
    ("t", {"apostrophe"}),
    ("cafe", {"accents", "combining"}),
    ("Café", {"accents", "combining"}),
    ("CAFÉ", {"accents", "combining"}),
    ("naive", {"accents"}),
    ("résumé", {"accents"}),
    ("3fa85f64-5717-4562-b3fc-2c963f66afa6", {"uuid"}),
    ("b3fc", {"uuid"}),
    ("timed-out", {"hyphen"}),
    ('"timed out"', {"hyphen"}),
    ("30s", {"hyphen"}),
    ("30", set()),
    ("日本語テキスト", {"cjk"}),
    ("日本語", set()),  # a run of letters is one word, in any script
    ("中文", {"cjk"}),
    ("x__y", {"dunder"}),
    ("__init__", {"dunder"}),
    ("init", set()),
    ("__", {"dunder"}),  # `_` alone is a word character too
    ("example.com", {"host"}),
    ('"example.com:9200"', {"host"}),
    ("9200", {"host"}),
    ('"Program Files"', {"windows"}),
    ('"C:\\\\Program"', {"windows"}),  # typed "C:\\Program": inside quotes \\ is one backslash
    ("mixed", {"case"}),
    ("upper", {"case"}),
    ("12.50", {"money"}),
    ("50", {"money"}),
    ("€", set()),  # no word character: matches no message
    ("tail", {"long word"}),
    ("endword", {"long run"}),
    ("σφαλμα", {"greek"}),
    ("ΔΊΣΚΟΥ", {"greek"}),
    ("vsh*", {"dotted", "plain"}),
    ("vshard.lea*", {"dotted"}),
    ("caf*", {"accents", "combining"}),
    ("-vshard", set(MESSAGES) - {"dotted", "plain"}),
]


def test_words_are_the_same_on_both_stores(hub: LiveHub) -> None:
    events = [{"id": k, "message": m} for k, m in MESSAGES.items()] + [{"id": k, **v} for k, v in IDS.items()]
    r = hub.ingest(events)
    assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text
    wrong = []
    for q, want in CASES:
        r = hub.get("/api/v1/search", q=q, limit=100, **{"from": "-1h"})
        assert r.status_code == 200, (q, r.text)
        got = {e["id"] for e in r.json()["events"]}
        if got != want:
            wrong.append((q, sorted(got), sorted(want)))
    assert not wrong, "\n".join(f"{q!r}: got {g}, want {w}" for q, g, w in wrong)
