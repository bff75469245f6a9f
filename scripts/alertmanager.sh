#!/usr/bin/env bash
# Debian's prometheus-alertmanager (server + amtool) for the alerting tests (tests/alerts/): the
# hub's alertmanager notifier posts to a real Alertmanager, which routes to a webhook receiver
# in the test. Only the binaries are used: each test starts its own server on 127.0.0.1 (gossip
# off) and stops it. Idempotent. Needs root (or sudo) for apt.
exec "$(dirname "$0")/apt-install.sh" /usr/bin/prometheus-alertmanager,/usr/bin/amtool prometheus-alertmanager
