"""Parser presets and user regexes against the real loghub samples and their structured CSVs.

Each `*_2k.log` has a `*_2k.log_structured.csv` with the fields a human-checked parser extracted:
message (Content), level and time must match ours on every one of the 2000 lines.
"""

from __future__ import annotations

import csv
from datetime import datetime

import pytest

from obshub_agent.config import InputConfig
from obshub_agent.parse import FileEncoder, TimestampParser
from obshub_agent.parse.encode import loads
from tests.data import LOGHUB

NOW = datetime(2026, 11, 23, 12, 0, 0).timestamp()  # fixed clock: year inference is deterministic


def _events(
    name: str, fmt: str, regex: str | None = None, ts_format: str | None = None, multiline: object = False
) -> tuple[list[dict], list[dict]]:
    log = LOGHUB / name / f"{name}_2k.log"
    inp = InputConfig(
        paths=(str(log),), format=fmt, regex=regex, ts_format=ts_format, service="svc", multiline=multiline
    )  # type: ignore[arg-type]
    enc = FileEncoder(
        inp, host="h1", uid="u", path=str(log), ts=TimestampParser(ts_format, "UTC", now=lambda: NOW), clock=lambda: NOW
    )
    out: list[bytes] = []
    data = log.read_bytes()
    if not data.endswith(b"\n"):  # the last line has no newline: the tailer emits it when the file is closed
        data += b"\n"
    enc.feed(data, 0, out)
    enc.flush(out)
    with open(LOGHUB / name / f"{name}_2k.log_structured.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [loads(x) for x in out], rows


def _check_common(events: list[dict], rows: list[dict]) -> None:
    assert len(events) == len(rows) == 2000
    for ev, row in zip(events, rows, strict=True):
        assert "parse_error" not in ev["attrs"], (ev, row)
        assert ev["message"] == row["Content"].strip(), (ev, row)
        assert ev["host"] == "h1" and ev["service"] == "svc"
        assert ev["id"].startswith("u-")
    offsets = [ev["attrs"]["offset"] for ev in events]
    assert offsets == sorted(offsets) and len(set(offsets)) == 2000
    assert len({ev["id"] for ev in events}) == 2000


def test_apache_error_preset() -> None:
    events, rows = _events("Apache", "apache_error")
    _check_common(events, rows)
    for ev, row in zip(events, rows, strict=True):
        assert ev["level"] == row["Level"]
        expect = datetime.strptime(row["Time"], "%a %b %d %H:%M:%S %Y")
        assert ev["ts"] == expect.strftime("%Y-%m-%dT%H:%M:%S+00:00")


@pytest.mark.parametrize("name", ["Linux", "OpenSSH", "Mac"])
def test_syslog_preset(name: str) -> None:
    events, rows = _events(name, "syslog")
    _check_common(events, rows)
    for ev, row in zip(events, rows, strict=True):
        month = row.get("Month") or row["Date"]
        day = int(row["Date"] if "Month" in row else row["Day"])
        dt = datetime.fromisoformat(ev["ts"])
        assert (dt.strftime("%b"), dt.day, dt.strftime("%H:%M:%S")) == (month, day, row["Time"]), (ev, row)
        if name == "OpenSSH":  # loghub labels the host column "Component" in this sample
            assert ev["attrs"]["hostname"] == row["Component"] and ev["logger"] == "sshd"
        else:
            assert ev["logger"] == row["Component"], (ev, row)
            assert ev["attrs"]["hostname"] == row.get("Level", row.get("User"))  # Linux: "Level" is the host
        if row.get("Address"):
            assert ev["attrs"]["address"] == row["Address"]
        pid = row.get("PID") or row.get("Pid") or ""
        assert ev["attrs"].get("pid", "") == pid, (ev, row)
    # no year in syslog: inferred so that no event lies in the future
    assert all(datetime.fromisoformat(ev["ts"]).timestamp() <= NOW + 86400 for ev in events)


def test_log4j_preset_zookeeper() -> None:
    # automatic multiline is on for log4j: none of these single-line records may be merged
    events, rows = _events("Zookeeper", "log4j", multiline=None)
    _check_common(events, rows)
    for ev, row in zip(events, rows, strict=True):
        assert ev["level"] == row["Level"].lower()
        assert datetime.fromisoformat(ev["ts"]) == datetime.fromisoformat(
            f"{row['Date']}T{row['Time'].replace(',', '.')}+00:00"
        )
        assert "lines" not in ev["attrs"]


REGEXES = {
    # name: (regex, ts_format or None, csv columns making up the time, level column)
    "HDFS": (
        r"^(?P<ts>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\w+) (?P<logger>[^:]+): (?P<message>.*)$",
        None,
        ("Date", "Time"),
        "Level",
    ),
    "Android": (
        r"^(?P<ts>\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s+(?P<pid>\d+)\s+(?P<tid>\d+) (?P<level>[VDIWEF]) "
        r"(?P<logger>[^:]*?)\s*: (?P<message>.*)$",
        None,
        ("Date", "Time"),
        "Level",
    ),
    "HealthApp": (
        r"^(?P<ts>\d{8}-\d\d?:\d\d?:\d\d?:\d+)\|(?P<logger>[^|]*)\|(?P<pid>\d+)\|\s*(?P<message>.*)$",
        None,
        ("Time",),
        None,
    ),
    "Proxifier": (r"^\[(?P<ts>\d\d\.\d\d \d\d:\d\d:\d\d)\] (?P<program>.*?) - (?P<message>.*)$", None, ("Time",), None),
    "HPC": (
        r"^(?P<logid>\d+) (?P<node>\S+) (?P<component>\S+) (?P<state>\S+) (?P<ts>\d+) (?P<flag>-?\d+) "
        r"(?P<message>.*)$",
        None,
        ("Time",),
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(REGEXES))
def test_user_regex(name: str) -> None:
    regex, ts_format, time_cols, level_col = REGEXES[name]
    events, rows = _events(name, "regex", regex=regex, ts_format=ts_format)
    _check_common(events, rows)
    for ev, row in zip(events, rows, strict=True):
        if level_col:
            assert ev["level"] == row[level_col].lower()
        raw = " ".join(row[c] for c in time_cols)
        if name == "HPC":
            assert ev["ts"] == int(raw)  # epoch seconds pass through as a number
            continue
        dt = datetime.fromisoformat(ev["ts"])
        if name == "HDFS":
            assert dt == datetime.strptime(raw, "%y%m%d %H%M%S").replace(tzinfo=dt.tzinfo)
        elif name == "Android":
            assert dt.strftime("%m-%d %H:%M:%S.%f")[:-3] == raw
        elif name == "HealthApp":
            d, t = raw.split("-")
            h, m, s, _ms = t.split(":")
            # the sample writes milliseconds unpadded ("35:11"): only whole seconds are unambiguous
            assert dt.strftime("%Y%m%d %H %M %S") == f"{d} {int(h):02d} {int(m):02d} {int(s):02d}"
        elif name == "Proxifier":
            assert dt.strftime("%m.%d %H:%M:%S") == raw
