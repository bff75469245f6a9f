"""obshub: a self-hosted observability correlation server (the hub).

The data path, one package per step: `ingest/` (the HTTP edges and the one ingest pipeline) ->
`digest/` (scrub, traceback parsing, grouping) -> `store/` (SQLite or OpenSearch, the only
package that talks to a database) -> `query/` (what the JSON API and the pages read) -> `web/`
(JSON API and pages). Beside it: `jobs/` (the scheduler: retention, uptime probes), `uptime/`
(the uptime checks domain). `app.py` builds the Starlette app, `hub.py` is the state its
routes, ingest and jobs share, `errors.py` the exception tree, `events.py` the event schema,
`cli/` the `obshub` command. The agent and the in-app SDK are their own packages (`agents/`).
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """`obshub.__version__`, from the installed package's metadata. Looked up on first use:
    importing importlib.metadata costs ~20 ms, which `obshub --help` should not pay."""
    if name != "__version__":
        raise AttributeError(f"module 'obshub' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("obshub")
    except PackageNotFoundError:  # a source tree on sys.path that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found
