"""`obshub-agent --config agent.toml`: run the per-host agent (see docs/agent.md)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from .config import ConfigError, load_config

__all__ = ["main"]

_DEFAULT_CONFIG = "/etc/obshub-agent/agent.toml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="obshub-agent", description="Tail log files and ship them to an obshub hub.")
    p.add_argument(
        "--config",
        "-c",
        default=os.environ.get("OBSHUB_AGENT_CONFIG", _DEFAULT_CONFIG),
        help=f"TOML config file (default: $OBSHUB_AGENT_CONFIG or {_DEFAULT_CONFIG})",
    )
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument("--version", action="version", version=f"obshub-agent {__version__}")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"obshub-agent: config error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.check:
        print(
            f"config ok: {len(cfg.inputs)} input(s), hub {', '.join(cfg.urls)}, host {cfg.host}, "
            f"state_dir {cfg.state_dir}"
        )
        return 0
    from .agent import Agent, AgentLocked

    try:
        agent = Agent(cfg, args.config)
    except (AgentLocked, ConfigError) as exc:
        print(f"obshub-agent: {exc}", file=sys.stderr)
        return 1
    agent.install_signals()
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
