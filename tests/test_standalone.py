"""The repository stands alone: a fresh clone on a new machine has nothing beside it, so no
code, test, script or doc may read or cite a file outside it (a sibling `shared/` folder, the
design notes it grew from)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A path climbing out of the checkout, or a document that lives only outside it.
OUTSIDE = re.compile(r"\.\./shared|parents\[\d\]\.parent|\bCONTRACT\.md\b|\bDESIGN(\.md)?\b[ :(]|\bSTYLE \d")


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if out.returncode == 0 and out.stdout:
        return [ROOT / p for p in out.stdout.decode().split("\0") if p]
    return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts and ".git" not in p.parts]


def test_nothing_reads_or_cites_files_outside_the_repository() -> None:
    me = Path(__file__).resolve()
    hits = []
    for path in _tracked():
        if path.resolve() == me or "data" in path.relative_to(ROOT).parts[:2] or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "references outside the repository:\n" + "\n".join(hits)


def test_the_loghub_samples_and_their_licence_are_carried() -> None:
    from tests.data import LOGHUB

    assert (LOGHUB / "LICENSE").is_file() and (LOGHUB / "CITATION").is_file()
    logs = sorted(LOGHUB.glob("*/*_2k.log"))
    assert len(logs) == 10
    for log in logs:
        assert (log.parent / f"{log.name}_structured.csv").is_file(), log
