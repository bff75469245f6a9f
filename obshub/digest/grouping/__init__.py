"""Error grouping. Each version is a frozen module: `v1.py` is never edited once groups exist
that were computed with it; a better algorithm becomes `v2.py`, and groups record which version
made them. `CURRENT` is what new events use."""

from obshub.digest.grouping import v1

CURRENT = v1

__all__ = ["CURRENT", "v1"]
