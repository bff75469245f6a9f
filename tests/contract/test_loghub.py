"""Every line of every loghub sample goes in as a text event and known lines are found again.

The samples are real production logs (HDFS, Apache, OpenSSH, Android...), so they exercise
tokenization of paths, ips, hex ids and punctuation that synthetic data would miss."""

from __future__ import annotations

import pytest

from tests.data import LOGHUB
from tests.hubproc import LiveHub

LOGS = sorted(LOGHUB.glob("*/*_2k.log"))


def test_the_dataset_is_there() -> None:
    assert len(LOGS) >= 8, f"loghub samples not found under {LOGHUB}"


def test_ingest_every_line_and_find_known_lines(hub: LiveHub) -> None:
    expected: dict[str, list[str]] = {}
    total = 0
    for path in LOGS:
        name = path.parent.name
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        events = [
            {"id": f"{name}-{i}", "message": ln, "service": name.lower(), "host": name.lower()}
            for i, ln in enumerate(lines)
        ]
        for i in range(0, len(events), 1000):
            r = hub.ingest(events[i : i + 1000])
            assert r.status_code == 200, r.text
            assert r.json()["accepted"] == len(events[i : i + 1000]) and not r.json()["rejected"]
        total += len(events)
        expected[name] = [lines[7], lines[len(lines) // 2], lines[-1]]
    assert total >= 15_000

    for name, known in expected.items():
        for line in known:
            words = [w for w in line.split() if any(c.isalnum() for c in w) and '"' not in w]
            phrase = " ".join(words[-4:])
            r = hub.get("/api/v1/search", q=f'service:{name.lower()} "{phrase}"', limit=1000, **{"from": "-1h"})
            assert r.status_code == 200, r.text
            messages = [e["message"] for e in r.json()["events"]]
            assert line in messages, (name, phrase)
    r = hub.get("/api/v1/search", q="service:openssh", limit=1, **{"from": "-1h"})
    assert r.json()["next_cursor"] is not None


@pytest.mark.parametrize("name", ["Apache", "OpenSSH"])
def test_structured_fields_are_queryable(hub: LiveHub, name: str) -> None:
    # The *_structured.csv files give level/content per line: ingest those as structured events
    # and check that facet counts equal the CSV's own counts.
    import csv

    with (LOGHUB / name / f"{name}_2k.log_structured.csv").open(errors="replace") as f:
        rows = list(csv.DictReader(f))
    events = []
    for r in rows:
        ev = {
            "id": f"{name}-s-{r['LineId']}",
            "message": r["Content"],
            "service": name.lower(),
            "attrs": {"event_id": r["EventId"]},
        }
        if r.get("Level"):
            ev["level"] = r["Level"]
        events.append(ev)
    for i in range(0, len(events), 1000):
        assert hub.ingest(events[i : i + 1000]).json()["accepted"] == len(events[i : i + 1000])
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["EventId"]] = counts.get(r["EventId"], 0) + 1
    top, n = max(counts.items(), key=lambda kv: kv[1])
    got = hub.search_all(f"event_id:{top}", **{"from": "-1h"})
    assert len(got) == n
