"""Logging reconfigured after configure(): every later line still reaches the SDK's file.

uvicorn's default ``log_config``, Django's ``LOGGING``, gunicorn's ``logconfig_dict`` and many
apps call ``logging.config.dictConfig`` after start-up. It closes every handler of the process
(which used to close the SDK's shared file: structlog lines were then dropped without a word)
and, with a ``root`` section, takes the SDK's handler off the root logger (stdlib lines went only
to the new handlers). Each test reconfigures the way the real thing does, then logs through
structlog, stdlib and ``track()`` and reads the file.
"""

from __future__ import annotations

import copy
import logging
import logging.config
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
import uvicorn.config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import obshub_sdk
from obshub_sdk.asgi import CorrelationMiddleware
from tests.sdk.conftest import read_lines

# Django's LOGGING as its documentation shows it (django itself need not be installed: Django
# hands this dict to logging.config.dictConfig at start-up, which is what matters here).
DJANGO_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"verbose": {"format": "{levelname} {asctime} {module} {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "verbose"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}

# gunicorn is not a dependency: this is gunicorn.glogging.CONFIG_DEFAULTS (gunicorn 23-26)
# verbatim. Logger.setup(cfg) does `config = CONFIG_DEFAULTS.copy(); config.update(
# cfg.logconfig_dict); dictConfig(config)` whenever logconfig_dict is set (gunicorn.conf.py).
GUNICORN_CONFIG_DEFAULTS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {
            "level": "INFO",
            "handlers": ["error_console"],
            "propagate": True,
            "qualname": "gunicorn.error",
        },
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": True, "qualname": "gunicorn.access"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stderr"},
    },
    "formatters": {
        "generic": {
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
            "class": "logging.Formatter",
        },
    },
}


def _gunicorn_setup(logconfig_dict: dict[str, Any]) -> None:
    config = copy.deepcopy(GUNICORN_CONFIG_DEFAULTS)
    config.update(logconfig_dict)
    logging.config.dictConfig(config)


_calls = iter(range(1 << 30))


def _log_after(tag: str) -> None:
    structlog.get_logger("app.views").info(f"structlog {tag}", n=1)
    # a logger made now: one that existed before a bare dictConfig is disabled by it (stdlib's
    # disable_existing_loggers), the SDK's own loggers excepted
    logging.getLogger(f"app.after.{next(_calls)}").warning(f"stdlib {tag}")
    obshub_sdk.track(f"track {tag}")


def _messages(path: Path) -> list[str]:
    return [x["message"] for x in read_lines(path)]


def _configured(tmp_path: Path) -> Path:
    path = tmp_path / "app.jsonl"
    obshub_sdk.configure(service="svc", path=path, host="h1")
    structlog.get_logger().info("before")
    return path


def _ini(tmp_path: Path) -> None:
    ini = tmp_path / "logging.ini"
    ini.write_text(
        "[loggers]\nkeys=root\n[handlers]\nkeys=console\n[formatters]\nkeys=plain\n"
        "[logger_root]\nlevel=INFO\nhandlers=console\n"
        "[handler_console]\nclass=StreamHandler\nformatter=plain\nargs=(sys.stderr,)\n"
        "[formatter_plain]\nformat=%(levelname)s %(message)s\n"
    )
    logging.config.fileConfig(ini, disable_existing_loggers=False)


RECONFIGURATIONS: dict[str, Callable[[Path], None]] = {
    "django LOGGING": lambda _: logging.config.dictConfig(copy.deepcopy(DJANGO_LOGGING)),
    "gunicorn logconfig_dict": lambda _: _gunicorn_setup({"root": {"level": "INFO", "handlers": ["console"]}}),
    "uvicorn LOGGING_CONFIG": lambda _: logging.config.dictConfig(copy.deepcopy(uvicorn.config.LOGGING_CONFIG)),
    "the repro (no root section)": lambda _: logging.config.dictConfig(
        {"version": 1, "disable_existing_loggers": False}
    ),
    "bare dictConfig (disables existing loggers)": lambda _: logging.config.dictConfig({"version": 1}),
    "fileConfig": _ini,
    "basicConfig(force=True)": lambda _: logging.basicConfig(force=True, level=logging.INFO),
}


@pytest.mark.parametrize("reconfigure", list(RECONFIGURATIONS), ids=list(RECONFIGURATIONS))
def test_lines_after_a_logging_reconfiguration_reach_the_file(tmp_path: Path, unconfigure, reconfigure: str) -> None:
    path = _configured(tmp_path)
    RECONFIGURATIONS[reconfigure](tmp_path)
    _log_after("after")
    RECONFIGURATIONS[reconfigure](tmp_path)  # twice, as a reload does: still one line each
    _log_after("again")
    assert _messages(path) == [
        "before",
        "structlog after",
        "stdlib after",
        "track after",
        "structlog again",
        "stdlib again",
        "track again",
    ]
    lines = read_lines(path)
    assert all(x["service"] == "svc" and x["host"] == "h1" for x in lines)
    assert lines[-1]["kind"] == "event" and lines[1]["attrs"] == {"n": 1}


def test_gunicorn_defaults_keep_its_own_loggers_and_the_apps_lines(tmp_path: Path, unconfigure, capsys) -> None:
    path = _configured(tmp_path)
    _gunicorn_setup(
        {"loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False}}}
    )
    logging.getLogger("gunicorn.error").info("Booting worker with pid: 1")  # gunicorn's: its console
    _log_after("in worker")
    assert _messages(path) == ["before", "structlog in worker", "stdlib in worker", "track in worker"]
    assert "Booting worker" in capsys.readouterr().err


def test_configure_after_a_reconfiguration_moves_to_the_new_file(tmp_path: Path, unconfigure) -> None:
    first = _configured(tmp_path)
    logging.config.dictConfig(copy.deepcopy(DJANGO_LOGGING))  # takes the handler off the root logger
    second = tmp_path / "second.jsonl"
    obshub_sdk.configure(service="svc2", path=second)  # closes the first file (no ResourceWarning)
    _log_after("moved")
    assert _messages(first) == ["before"]
    assert _messages(second) == ["structlog moved", "stdlib moved", "track moved"]
    assert len([h for h in logging.getLogger().handlers if getattr(h, "_obshub_sdk", False)]) == 1


def test_uvicorn_started_with_its_default_log_config(tmp_path: Path, unconfigure) -> None:
    """A real uvicorn server started without log_config=None: uvicorn.Config runs
    dictConfig(LOGGING_CONFIG) when the server is set up, after the app configured the SDK."""
    path = _configured(tmp_path)

    async def checkout(request: Request) -> PlainTextResponse:
        obshub_sdk.bind_user("alice")
        structlog.get_logger("shop").info("checkout started")
        logging.getLogger("shop.legacy").info("stdlib in the request")
        obshub_sdk.track("checkout_started")
        return PlainTextResponse("ok")

    app = CorrelationMiddleware(Starlette(routes=[Route("/checkout", checkout)]))
    config = uvicorn.Config(app, lifespan="off", timeout_graceful_shutdown=2)
    assert config.log_config == uvicorn.config.LOGGING_CONFIG  # the default, applied above
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        resp = httpx.get(f"http://127.0.0.1:{sock.getsockname()[1]}/checkout", timeout=10)
        assert resp.status_code == 200
        request_id = resp.headers["x-request-id"]
        deadline = time.monotonic() + 5
        while "GET /checkout 200" not in _messages(path) and time.monotonic() < deadline:
            time.sleep(0.01)  # the access line is written after the response is sent
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    mine = [x for x in read_lines(path) if x.get("request_id") == request_id]
    assert [x["message"] for x in mine] == [
        "checkout started",
        "stdlib in the request",
        "checkout_started",
        "GET /checkout 200",
    ]
    assert all(x["user_id"] == "alice" for x in mine)


def test_the_reported_repro_in_a_fresh_interpreter(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        'import obshub_sdk,structlog,logging.config; obshub_sdk.configure(service="s",path="x.jsonl"); '
        'logging.config.dictConfig({"version":1,"disable_existing_loggers":False}); '
        'structlog.get_logger().info("lost")'
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == ""  # -X dev: no ResourceWarning at exit either
    assert _messages(tmp_path / "x.jsonl") == ["lost"]
