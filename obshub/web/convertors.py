"""Path parameters that take any id: `{name:anypath}`.

Starlette's `path` parameter is `.*`, which stops at a line break, so an id holding one (ingest
stores ids as sent) had no trace or user page: the URL matched no route and was a 404. This one
matches every character, `/` included. Registered once, on import, before any route uses it.
"""

from __future__ import annotations

from starlette.convertors import PathConvertor, register_url_convertor

__all__ = ["ANY_PATH"]

ANY_PATH = "anypath"


class _AnyPath(PathConvertor):
    regex = "(?s:.*)"


register_url_convertor(ANY_PATH, _AnyPath())
