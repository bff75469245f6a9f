"""File source on real files in a temp dir: rotation, truncation, partial lines, identity."""

from __future__ import annotations

import os
import time
from pathlib import Path

from obshub_agent.checkpoints import CheckpointStore
from obshub_agent.config import parse_config
from obshub_agent.parse.encode import loads
from obshub_agent.sources import FileSource


def _source(tmp_path: Path, **kw: object) -> tuple[FileSource, CheckpointStore]:
    doc = {
        "hub": "http://127.0.0.1:1",
        "token": "t",
        "host": "h1",
        "state_dir": str(tmp_path / "state"),
        "inputs": [{"paths": [str(tmp_path / "logs" / "app.log*")], "format": "json", "service": "shop"}],
        "close_removed_after_ms": 1,
        **kw,
    }
    cfg = parse_config(doc, env={})
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    cps = CheckpointStore(cfg.state_dir)
    cps.load()
    return FileSource(cfg, cps), cps


def _pump(src: FileSource, cps: CheckpointStore, rounds: int = 3) -> list[dict]:
    """What the agent's read loop does, minus the spool: discover, read to EOF, housekeeping, commit."""
    out: list[bytes] = []
    for _ in range(rounds):
        src.discover(out)
        while src.read_pass(out):
            pass
        time.sleep(0.002)
        src.housekeeping(out)
    src.snapshot()
    cps.save()
    return [loads(x) for x in out]


def _write(path: Path, start: int, n: int) -> None:
    with open(path, "a") as f:
        for i in range(start, start + n):
            f.write(f'{{"message": "line {i}", "seq": {i}}}\n')


def _seqs(events: list[dict]) -> list[int]:
    return [e["seq"] for e in events]


def test_rename_rotation_finishes_old_file_and_reads_new(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 10)
    src, cps = _source(tmp_path)
    assert _seqs(_pump(src, cps)) == list(range(10))
    # rotation: lines written to the old inode after the rename are still read (same fd)
    os.rename(app, logs / "app.log.1")
    _write(logs / "app.log.1", 10, 5)
    _write(app, 15, 5)
    events = _pump(src, cps)
    assert sorted(_seqs(events)) == list(range(10, 20))
    ids = {e["id"] for e in events}
    assert len(ids) == 10
    # the renamed file keeps its identity: nothing is re-read under its new name
    assert _pump(src, cps) == []


def test_rotation_out_of_glob_while_down_is_finished_at_start(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 10)
    src, cps = _source(tmp_path, inputs=[{"paths": [str(app)], "format": "json"}])
    assert _seqs(_pump(src, cps)) == list(range(10))
    src.close_all()
    # agent down: more lines, then rotation to a name the glob does not match, then a new file
    _write(app, 10, 5)
    os.rename(app, logs / "old-app.log")
    _write(app, 15, 5)
    src, cps = _source(tmp_path, inputs=[{"paths": [str(app)], "format": "json"}])
    events = _pump(src, cps)
    assert sorted(_seqs(events)) == list(range(10, 20))


def test_copytruncate_restarts_at_zero_with_new_ids(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 10)
    src, cps = _source(tmp_path)
    first = _pump(src, cps)
    with open(app, "r+") as f:
        f.truncate(0)
    _write(app, 0, 3)  # same content as before the truncation: must still be new events
    events = _pump(src, cps)
    assert _seqs(events) == [0, 1, 2]
    assert not {e["id"] for e in events} & {e["id"] for e in first}
    assert src.truncations == 1


def test_partial_line_held_until_newline_and_checkpoint_at_its_start(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 2)
    with open(app, "a") as f:
        f.write('{"message": "line 2", "se')
    src, cps = _source(tmp_path)
    assert _seqs(_pump(src, cps)) == [0, 1]
    size_before_partial = app.stat().st_size - len('{"message": "line 2", "se')
    assert next(iter(cps.entries.values())).offset == size_before_partial
    # restart: the partial line is read again, whole, once completed
    src.close_all()
    with open(app, "a") as f:
        f.write('q": 2}\n')
    src, cps = _source(tmp_path)
    events = _pump(src, cps)
    assert _seqs(events) == [2]
    assert events[0]["attrs"]["offset"] == size_before_partial


def test_restart_resumes_at_checkpoint_with_same_ids(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 5)
    src, cps = _source(tmp_path)
    a = _pump(src, cps)
    src.close_all()
    # a restart without the checkpoint (state lost) reproduces the very same ids: the hub dedups
    (tmp_path / "state" / "checkpoints.json").unlink()
    src, cps = _source(tmp_path)
    b = _pump(src, cps)
    assert [e["id"] for e in a] == [e["id"] for e in b]
    assert a[0]["id"] != a[1]["id"] and all(len(e["id"]) <= 128 for e in a)
    assert a[0]["host"] == "h1" and a[0]["service"] == "shop"
    assert a[1]["attrs"] == {"file": str(app), "offset": len(app.read_bytes().split(b"\n")[0]) + 1}
    assert a[1]["seq"] == 1  # the app's own fields pass through untouched


def test_inode_reuse_with_different_head_is_a_new_file(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 5)
    src, cps = _source(tmp_path)
    _pump(src, cps)
    src.close_all()
    # simulate reuse: same inode (rewrite in place while down), different content, larger than the offset
    with open(app, "r+") as f:
        f.truncate(0)
    _write(app, 100, 20)
    src, cps = _source(tmp_path)
    assert _seqs(_pump(src, cps)) == list(range(100, 120))


def test_deleted_file_is_closed_and_forgotten(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 3)
    src, cps = _source(tmp_path)
    _pump(src, cps)
    assert len(src.files) == 1
    app.unlink()
    _pump(src, cps)
    assert src.files == {} and cps.entries == {}


def test_last_line_without_newline_emitted_when_rotated_away(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    with open(app, "w") as f:
        f.write('{"seq": 0}\n{"seq": 1}')
    src, cps = _source(tmp_path, inputs=[{"paths": [str(app)], "format": "json"}])
    assert _seqs(_pump(src, cps)) == [0]
    os.rename(app, logs / "gone.log")
    assert _seqs(_pump(src, cps)) == [1]


def test_overlong_line_is_truncated_not_buffered(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    with open(app, "w") as f:
        f.write("x" * 5000 + "\n" + '{"seq": 1}\n')
    src, cps = _source(
        tmp_path, max_line_bytes=1000, read_chunk_bytes=512, inputs=[{"paths": [str(app)], "format": "json"}]
    )
    events = _pump(src, cps)
    assert len(events[0]["message"]) == 1000 and events[1]["seq"] == 1


def test_text_format_and_labels(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text("hello world\n\nsecond line\r\n")
    src, cps = _source(tmp_path, inputs=[{"paths": [str(app)], "format": "text", "labels": {"env": "prod"}}])
    events = _pump(src, cps)
    assert [e["message"] for e in events] == ["hello world", "second line"]
    assert events[0]["service"] == "app" and events[0]["attrs"]["env"] == "prod"
    assert isinstance(events[0]["ts"], float)  # no time in the line: read time


def test_pending_multiline_group_checkpointed_at_its_start(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    head = "2026-01-02 03:04:05,000 INFO shop.api started\n"
    group = (
        "2026-01-02 03:04:06,000 ERROR shop.api boom\nTraceback (most recent call last):\n"
        '  File "a.py", line 1, in <module>\nValueError: bad\n'
    )
    app.write_text(head + group)
    inputs = [{"paths": [str(app)], "format": "python", "multiline": {"start": r"^\d{4}-", "timeout_ms": 60000}}]
    src, cps = _source(tmp_path, inputs=inputs)
    assert [e["message"] for e in _pump(src, cps)] == ["started"]  # the traceback may still grow
    assert next(iter(cps.entries.values())).offset == len(head)
    src.close_all()  # crash: the held group was never shipped, the checkpoint is at its first line
    src, cps = _source(tmp_path, inputs=[{**inputs[0], "multiline": {"start": r"^\d{4}-", "timeout_ms": 1}}])
    events = _pump(src, cps)
    assert len(events) == 1 and events[0]["error"]["type"] == "ValueError"
    assert events[0]["attrs"]["offset"] == len(head) and events[0]["attrs"]["lines"] == 4


# -- copies (logrotate copytruncate inside the globs) ---------------------------------------------


def _copytruncate(app: Path, copy: Path) -> None:
    copy.write_bytes(app.read_bytes())  # a new inode with the same content
    with open(app, "r+") as f:
        f.truncate(0)


def test_copytruncate_copy_inside_the_globs_is_not_read_again(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 100)
    src, cps = _source(tmp_path)
    first = _pump(src, cps)
    assert _seqs(first) == list(range(100))
    _copytruncate(app, logs / "app.log.1")
    _write(app, 100, 3)
    events = _pump(src, cps)
    assert _seqs(events) == [100, 101, 102]
    assert src.copies == 1 and src.truncations == 1
    assert _pump(src, cps) == []


def test_copy_longer_than_what_was_read_continues_from_the_read_offset(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 10)
    src, cps = _source(tmp_path)
    assert _seqs(_pump(src, cps)) == list(range(10))
    _write(app, 10, 5)  # not read before logrotate copies and truncates: only the copy has them
    _copytruncate(app, logs / "app.log.1")
    _write(app, 15, 2)
    events = _pump(src, cps)
    assert sorted(_seqs(events)) == list(range(10, 17))
    assert len({e["id"] for e in events}) == 7


def test_copy_seen_before_the_truncate_waits_for_its_original(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 10)
    src, cps = _source(tmp_path)
    _pump(src, cps)
    copy = logs / "app.log.1"
    copy.write_bytes(app.read_bytes())  # copied; the truncate comes later
    _write(app, 10, 2)
    assert _seqs(_pump(src, cps)) == [10, 11]  # from the original; the copy waits
    assert len(src.files) == 1 and src.copies == 0
    with open(app, "r+") as f:
        f.truncate(0)
    _write(app, 12, 1)
    assert _seqs(_pump(src, cps)) == [12]
    assert src.copies == 1 and len(src.files) == 2
    assert _pump(src, cps) == []


def test_partial_line_at_truncate_is_read_whole_from_the_copy(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 3)
    with open(app, "a") as f:
        f.write('{"message": "line 3", "se')
    src, cps = _source(tmp_path)
    assert _seqs(_pump(src, cps)) == [0, 1, 2]
    with open(app, "a") as f:
        f.write('q": 3}\n')
    _copytruncate(app, logs / "app.log.1")
    out: list[bytes] = []
    src.housekeeping(out)  # the truncation is noticed before the copy is discovered
    events = [loads(x) for x in out] + _pump(src, cps)
    assert _seqs(events) == [3] and "parse_error" not in events[0].get("attrs", {})


def test_copy_shorter_than_the_known_start(tmp_path: Path) -> None:
    """Small files: a copy made while the file was a few bytes long, and a file of one short line
    (shorter than the 256-byte head and the 4 KiB signature)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text('{"seq": 0}\n')
    src, cps = _source(tmp_path)
    assert _seqs(_pump(src, cps)) == [0]
    _copytruncate(app, logs / "app.log.1")
    assert _pump(src, cps) == [] and src.copies == 1
    # copied at 2 lines, 3 more read from the original before the truncate
    _write(app, 1, 2)
    _pump(src, cps)
    copy = logs / "app.log.2"
    copy.write_bytes(app.read_bytes())
    _write(app, 3, 3)
    assert _seqs(_pump(src, cps)) == [3, 4, 5]
    with open(app, "r+") as f:
        f.truncate(0)
    out: list[bytes] = []
    src.housekeeping(out)
    assert out == [] and _pump(src, cps) == [] and src.copies == 2


def test_copy_made_while_the_agent_is_down(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 10)
    src, cps = _source(tmp_path)
    _pump(src, cps)
    src.close_all()
    _write(app, 10, 5)  # written while the agent is down, then rotated by copytruncate
    _copytruncate(app, logs / "app.log.1")
    _write(app, 15, 2)
    src, cps = _source(tmp_path)
    assert sorted(_seqs(_pump(src, cps))) == list(range(10, 17))
    assert _pump(src, cps) == []


def test_ended_generation_survives_a_restart(tmp_path: Path) -> None:
    """The copy appears (moved into the globs) only after a restart: the truncated generation's
    fingerprint and offset come from checkpoints.json."""
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 50)
    src, cps = _source(tmp_path)
    _pump(src, cps)
    _copytruncate(app, tmp_path / "app.log.1")  # outside the globs for now
    _write(app, 50, 1)
    assert _seqs(_pump(src, cps)) == [50]
    src.close_all()
    os.rename(tmp_path / "app.log.1", logs / "app.log.1")
    src, cps = _source(tmp_path)
    assert len(cps.ended) == 1 and not cps.ended[0].head  # loaded: the hash only
    assert _pump(src, cps) == [] and src.copies == 1


def test_same_first_line_other_content_is_a_new_file(tmp_path: Path) -> None:
    """A new file starting like one already read is a copy only if it holds those bytes."""
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text('{"header": true}\n{"seq": 0}\n')
    src, cps = _source(tmp_path)
    assert len(_pump(src, cps)) == 2
    os.rename(app, logs / "app.log.1")  # rename rotation: the old file is still open and live
    app.write_text('{"header": true}\n{"seq": 1}\n')
    assert [e.get("seq") for e in _pump(src, cps)] == [None, 1]
    (logs / "app.log.1").unlink()  # deleted: its generation ended
    _pump(src, cps)
    (logs / "app.log.2").write_text('{"header": true}\n{"seq": 2}\n')
    assert [e.get("seq") for e in _pump(src, cps)] == [None, 2]
    assert src.copies == 0


def test_copy_lines_keep_the_original_ids_across_a_crash(tmp_path: Path) -> None:
    """Read but not checkpointed (SIGKILL before the save; the spool replays them with the
    original's ids), then copytruncate while down: the copy re-reads them with the same ids, so
    the hub stores them once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 10)
    src, cps = _source(tmp_path)
    _pump(src, cps)
    _write(app, 10, 5)
    out: list[bytes] = []
    src.discover(out)
    while src.read_pass(out):
        pass
    before_crash = [loads(x) for x in out]
    assert _seqs(before_crash) == list(range(10, 15))
    src.close_all()  # crash: checkpoints.json still says 10 lines
    _copytruncate(app, logs / "app.log.1")
    src, cps = _source(tmp_path)
    events = _pump(src, cps)
    assert [e["id"] for e in events] == [e["id"] for e in before_crash]
    assert events[0]["attrs"]["file"] == str(logs / "app.log.1")


def test_truncated_and_regrown_past_a_lagging_read_position(tmp_path: Path) -> None:
    """The agent lags (read 1 KiB of the file); copytruncate; the app writes more than 1 KiB again
    before the agent's next check: the next read must not take the new content for the rest of
    the old one (a mixed line, and new lines under the old ids)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 100)
    src, cps = _source(tmp_path, read_chunk_bytes=1024)
    out: list[bytes] = []
    src.discover(out)
    src.read_pass(out)
    _copytruncate(app, logs / "app.log.1")
    _write(app, 1000, 100)
    src.read_pass(out)  # before any discovery or housekeeping notices
    events = [loads(x) for x in out] + _pump(src, cps)
    assert sorted(_seqs(events)) == list(range(100)) + list(range(1000, 1100))
    assert not [e for e in events if "parse_error" in e.get("attrs", {})]


def test_partial_line_read_whole_from_a_copy_that_reuses_an_inode(tmp_path: Path) -> None:
    """The copy gets the inode of a file deleted a moment ago whose checkpoint entry is still
    there (it happens in the oracle soak): it is still the copy holding the half-read line."""
    from obshub_agent.checkpoints import Checkpoint

    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    _write(app, 0, 3)
    with open(app, "a") as f:
        f.write('{"message": "line 3", "se')
    src, cps = _source(tmp_path)
    assert _seqs(_pump(src, cps)) == [0, 1, 2]
    with open(app, "a") as f:
        f.write('q": 3}\n')
    copy = logs / "app.log.1"
    _copytruncate(app, copy)
    st = copy.stat()
    cps.entries[f"{st.st_dev}:{st.st_ino}"] = Checkpoint(  # the deleted file's, same inode number
        path=str(logs / "app.log.3"),
        dev=st.st_dev,
        ino=st.st_ino,
        fp="0" * 16,
        fp_len=20,
        gen=0,
        offset=5000,
        seen=time.time(),
        sig="0" * 32,
        sig_len=4096,
    )
    out: list[bytes] = []
    src.housekeeping(out)
    events = [loads(x) for x in out] + _pump(src, cps)
    assert _seqs(events) == [3] and "parse_error" not in events[0].get("attrs", {})
