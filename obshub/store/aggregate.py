"""What both stores' `aggregate` share: the measures' definitions and the assembly of the answer
tree from flat cells, so the two backends differ only in how they compute a cell.

A cell is the measure over the events of one path and one time bucket: the path is () for every
matching event, (k1,) for a first-level group, (k1, k2) for a second-level one; `None` in a path
stands for a level's `other` events (not in its top groups, or without the field: a group key is
never None). The bucket is None for the whole range.

Measures (docs/aggregate.md):
- `count` counts events; `unique(F)` distinct non-empty values of a core field;
- `sum/avg/min/max/pNN(F)` read numbers only: an event whose attribute is missing, a string
  ("12"), a boolean or an array is counted in `count` but not in the value (None when a cell
  has no number at all);
- percentiles are the linear interpolation between the two closest ranks (rank = p * (n - 1),
  0-based: numpy's default "linear", `statistics.quantiles(method="inclusive")`), exact on
  SQLite; OpenSearch estimates them with TDigest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from obshub.store.base import AggBucket, AggKey, AggregateRequest, AggValue

__all__ = ["PERCENTILES", "Cells", "Path", "attr_name", "build", "empty_value", "interpolate"]

PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
Path = tuple[AggKey | None, ...]
# (path, bucket start or None) -> (events, value)
Cells = Mapping[tuple[Path, int | None], tuple[int, AggValue]]

# An attribute's name as the query language admits it (querylang._is_name, without "attrs."):
# what a store may inline into SQL (a JSON path) or a regular expression.
_ATTR = re.compile(r"[^\W\d][\w.@-]*|[_@][\w.@-]*")


def attr_name(field: str) -> str | None:
    """`attrs.plan` -> `plan` (ValueError for a name the query language would not take); a core
    field -> None."""
    if not field.startswith("attrs."):
        return None
    key = field[6:]
    if not _ATTR.fullmatch(key):
        raise ValueError(f"{field!r} is not an attribute name")
    return key


def empty_value(op: str) -> AggValue:
    """The value of a cell without events (or without numbers): counts are 0, the rest None."""
    return 0 if op in ("count", "unique") else None


def interpolate(q: float, n: int, lo: float, hi: float | None) -> float:
    """The `q` quantile of n sorted numbers from the two at ranks floor(q * (n - 1)) and the next
    (`hi` is None when there is no next)."""
    pos = q * (n - 1)
    frac = pos - math.floor(pos)
    return float(lo) if hi is None or frac == 0 else float(lo) + frac * (float(hi) - float(lo))


def build(req: AggregateRequest, top1: list[AggKey], top2: Mapping[AggKey, list[AggKey]], cells: Cells) -> AggBucket:
    """The answer tree: the root (every matching event), its `top1` groups each with their
    `top2[k1]` groups, and each level's `other`."""
    by_path: dict[Path, dict[int | None, tuple[int, AggValue]]] = {}
    for (path, t), cv in cells.items():
        by_path.setdefault(path, {})[t] = cv
    empty = empty_value(req.op)

    def bucket(path: Path, key: AggKey | None) -> AggBucket:
        got = by_path.get(path, {})
        n, v = got.get(None, (0, empty))
        series = [(t, c, x) for t, (c, x) in sorted((t, cv) for t, cv in got.items() if t is not None) if c]
        return AggBucket(n, v, series, key)

    root = bucket((), None)
    if req.group_by:
        for k1 in top1:
            g = bucket((k1,), k1)
            if len(req.group_by) > 1:
                g.groups = [bucket((k1, k2), k2) for k2 in top2.get(k1, [])]
                g.other = bucket((k1, None), None)
            root.groups.append(g)
        root.other = bucket((None,), None)
    return root
