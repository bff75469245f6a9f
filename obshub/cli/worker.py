"""One worker process of `obshub serve --workers N`, started by the supervisor
(obshub/cli/workers.py) as `python -m obshub.cli.worker`, never by hand.

It inherits two file descriptors: the listening socket the supervisor bound (every worker accepts
on it; the kernel hands each connection to one of them) and its end of a control socket pair. It
builds its own app (own event loop, store client and group-commit writer, jobs' lease contender)
from the same settings as the supervisor (environment, config file, and the `serve` options the
user gave, passed on as given: a store URL with a password from the environment stays out of
`ps`), says `R` on the control socket once its startup completed, and stops like `obshub serve`
on SIGTERM. The control socket reaching EOF means the supervisor is gone (even SIGKILLed): the
worker then stops too, rather than serve on unsupervised.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading

__all__ = ["main"]


def _stop_with(control: socket.socket) -> None:
    """Block until the supervisor's end closes, then stop this worker as SIGTERM would."""
    try:
        while control.recv(64):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    from obshub.app import create_app
    from obshub.cli.args import _die
    from obshub.cli.serve import _configure_logging, _tune_gc, run
    from obshub.errors import ConfigError
    from obshub.settings import load_settings

    ap = argparse.ArgumentParser(prog="obshub.cli.worker", description="one worker of `obshub serve --workers N`")
    ap.add_argument("--listen-fd", type=int, required=True)
    ap.add_argument("--control-fd", type=int, required=True)
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    ap.add_argument("--store")
    ns = ap.parse_args(argv)
    listener = socket.socket(fileno=ns.listen_fd)
    control = socket.socket(fileno=ns.control_fd)
    threading.Thread(target=_stop_with, args=(control,), name="obshub-supervisor-watch", daemon=True).start()
    try:  # the supervisor checked them; a config file changed since is this start's failure
        settings = load_settings(host=ns.host, port=ns.port, store=ns.store)
        _configure_logging(settings.log_level)
        app = create_app(settings)
    except ConfigError as e:
        return _die(f"configuration error: {e}")
    _tune_gc()
    try:
        return run(app, settings, sockets=[listener], on_ready=lambda: control.sendall(b"R"))
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it stopped on (the supervisor's second signal)
        return 0


if __name__ == "__main__":
    sys.exit(main())
