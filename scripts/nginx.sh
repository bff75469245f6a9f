#!/usr/bin/env bash
# Debian's nginx (light) for the scale-out test (tests/scale/test_proxy.py): the compose stack's
# compose/nginx.conf runs in front of two real hubs. Only the binary is used: the test runs its
# own nginx in the foreground, unprivileged, with its own prefix, and stops it. Idempotent.
# Needs root (or sudo) for apt.
exec "$(dirname "$0")/apt-install.sh" /usr/sbin/nginx nginx-light
