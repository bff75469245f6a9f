"""`obshub` command line: serve | project | token | demo | search | export | trace | alerts.

Client commands (`demo`, `search`, `export`, `trace`) talk HTTP to a running hub (`--url`, `--token`, or
OBSHUB_URL / OBSHUB_TOKEN); `serve`, `project` and `token` open the store directly, read from the
same settings as `serve` (OBSHUB_* and the OBSHUB_CONFIG file, obshub/settings.py).

`args.py` is the parser, `serve.py` the hub, `admin.py` the store commands (project, token),
`client.py` the HTTP client commands; each command's module is imported only when it runs, so
`obshub --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from obshub.cli.args import _die, _join_time_values, _parser
from obshub.errors import ConfigError, StoreError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_join_time_values(sys.argv[1:] if argv is None else argv))
    try:
        code = _run(args)
        # Flushed here, not at exit: a reader that left (`| head`) raises now, into the except
        # below, instead of as "Exception ignored ... BrokenPipeError" at interpreter shutdown.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except ConfigError as e:
        return _die(f"configuration error: {e}")
    except StoreError as e:  # e.g. `serve --demo` or `project` with the store unreachable
        return _die(str(e), 1)
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from obshub.cli.serve import _serve

        return _serve(args)
    if args.command in ("project", "token"):
        from obshub.cli.admin import _project, _token

        return _project(args) if args.command == "project" else _token(args)
    if args.command == "alerts":
        from obshub.cli.alerts import _alerts_test

        return _alerts_test(args)
    from obshub.cli import client

    run = {"demo": client._demo, "search": client._search, "export": client._export}
    return run.get(args.command, client._trace)(args)


def _stdout_closed() -> int:
    """The reader of our stdout went away (`obshub search ... | head -1`): stop quietly, as a
    Unix tool killed by SIGPIPE would, with its exit status 128 + 13 = 141. Python ignores
    SIGPIPE, so the write raised instead. stdout now points at /dev/null so that the final
    flush at exit, still holding the unwritten lines, has somewhere to go."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE
