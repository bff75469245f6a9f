#!/usr/bin/env bash
# Debian's rsyslog with its Elasticsearch output (omelasticsearch) for the shipper tests
# (tests/ingest/test_es_bulk.py): a real rsyslogd ships syslog lines to the hub's /es/_bulk.
# Only the binary and the module are used: each test runs its own rsyslogd in the foreground,
# unprivileged, with its own config, and stops it. Idempotent. Needs root (or sudo) for apt.
MODULE="/usr/lib/$(uname -m)-linux-gnu/rsyslog/omelasticsearch.so"  # Debian's multiarch path
exec "$(dirname "$0")/apt-install.sh" "/usr/sbin/rsyslogd,$MODULE" rsyslog rsyslog-elasticsearch
