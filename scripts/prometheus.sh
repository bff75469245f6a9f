#!/usr/bin/env bash
# Debian's prometheus (server + promtool) for the dashboard tests (tests/dashboards/): a real
# Prometheus scrapes a real hub and agent, and every query of dashboards/*.json runs against it.
# Only the binaries are used: each test starts its own server on 127.0.0.1 and stops it.
# Idempotent. Needs root (or sudo) for apt.
exec "$(dirname "$0")/apt-install.sh" /usr/bin/prometheus,/usr/bin/promtool prometheus
