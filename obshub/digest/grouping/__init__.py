"""Error grouping. Each version is a frozen module: `v1.py` and `v2.py` are never edited once
groups exist that were computed with them; a better algorithm becomes the next `vN.py`, and
groups record which version made them. `CURRENT` is what new events use.

v2 (current) groups one traceback into one group whichever way it arrives (SDK frames, Sentry
frames, traceback text); v1 grouped each of those ways apart (see v2.py)."""

from obshub.digest.grouping import v1, v2

CURRENT = v2

__all__ = ["CURRENT", "v1", "v2"]
