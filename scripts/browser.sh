#!/usr/bin/env bash
# Debian's chromium for the browser tests (tests/web/, marker `browser`). Playwright's own
# browser download cannot work offline/in CI here, so the tests drive /usr/bin/chromium.
# Idempotent: does nothing when chromium is already installed. Needs root (or sudo) for apt.
exec "$(dirname "$0")/apt-install.sh" /usr/bin/chromium chromium fonts-dejavu-core
