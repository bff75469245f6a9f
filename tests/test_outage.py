"""OutageLog: a failing dependency is logged when it starts, about once a minute while it lasts,
and when it ends; never once per failure."""

from __future__ import annotations

import structlog
from structlog.testing import capture_logs

from obshub.outage import OutageLog


def test_an_outage_is_its_first_failure_one_line_a_minute_and_its_end() -> None:
    now = [100.0]
    out = OutageLog(structlog.get_logger("test"), "store unavailable", every_s=60, clock=lambda: now[0])
    with capture_logs() as logs:
        out.ok()  # nothing was failing: nothing to say
        for _ in range(30):  # 30 failures in 29 s
            out.failed("connection refused", path="/api/v1/ingest")
            now[0] += 1
        assert out.failing
        assert logs == [
            {
                "event": "store unavailable",
                "log_level": "warning",
                "error": "connection refused",
                "path": "/api/v1/ingest",
            }
        ]
        now[0] = 161.0  # a minute after the first line
        out.failed("timed out")
        assert logs[1] == {
            "event": "store unavailable",
            "log_level": "warning",
            "error": "timed out",
            "failing_for_s": 61,
            "failures_not_logged": 29,
        }
        now[0] += 5
        out.failed("timed out")  # within the minute again: counted, not logged
        out.ok()
        assert logs[2] == {
            "event": "store unavailable: recovered",
            "log_level": "info",
            "failed_for_s": 66.0,
            "failures_not_logged": 1,
        }
        out.ok()
        assert len(logs) == 3 and not out.failing
        now[0] += 1
        out.failed("refused again")  # a new outage is news at once
        assert logs[3] == {"event": "store unavailable", "log_level": "warning", "error": "refused again"}
