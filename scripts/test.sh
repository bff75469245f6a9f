#!/usr/bin/env bash
# The whole test suite, as README's `make test` and CI's .ci/run call it: the static checks
# (scripts/lint.sh), then pytest.
#
# OpenSearch: tests start their own node through scripts/opensearch.sh (tests/opensearch_node.py);
# here we only fetch the distribution first, so the download shows up as its own step. With
# CI=true a node that cannot start fails the run; locally, without Java/Maven, those tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

# Static checks first (~10 s cold, timed each): a lint or type error fails the run before the
# tests. `make lint` runs the same script.
scripts/lint.sh

if ! { command -v java >/dev/null && command -v mvn >/dev/null; } && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "== installing Java 17 and Maven for the OpenSearch node"
  DEBIAN_FRONTEND=noninteractive apt-get update -q && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openjdk-17-jdk-headless maven unzip || true
fi
if command -v java >/dev/null && command -v mvn >/dev/null; then
  echo "== fetching OpenSearch (cached in ~/.cache/obshub)"
  scripts/opensearch.sh fetch
elif [ "${CI:-}" = "true" ]; then
  echo "test.sh: CI needs java and mvn for the OpenSearch tests" >&2
  exit 1
else
  echo "test.sh: java/mvn not found: OpenSearch tests will be skipped (they are required in CI)" >&2
fi

# Debian packages some tests need: skipped locally without them, required in CI.
needed_in_ci() {  # WHAT SCRIPT
  echo "== $1"
  if ! "$2"; then
    if [ "${CI:-}" = "true" ]; then
      echo "test.sh: CI needs $1 ($2 failed)" >&2
      exit 1
    fi
    echo "test.sh: no $1: those tests will skip (they are required in CI)" >&2
  fi
}
needed_in_ci "chromium for the browser tests" scripts/browser.sh
needed_in_ci "prometheus for the dashboard tests" scripts/prometheus.sh
needed_in_ci "alertmanager for the alerting tests" scripts/alertmanager.sh
needed_in_ci "rsyslog with omelasticsearch for the shipper tests" scripts/rsyslog.sh
needed_in_ci "nginx for the reverse-proxy test" scripts/nginx.sh

# Parallel workers (pytest-xdist): most of the suite waits (on real servers, leases, intervals,
# sleeps that prove nothing more arrives), so workers overlap those waits; measured on 2 cores:
# ~24.5 min in one process, ~11 min in 4 workers. `--dist loadfile` keeps each file in one
# worker, in its order, so module fixtures (a module's own OpenSearch node, Prometheus, ...)
# start once; the workers share one session OpenSearch node (tests/opensearch_node.py).
# OBSHUB_TEST_WORKERS=N changes the count; 0 runs in this process, as before (a test that fails
# only in parallel shows that way).
WORKERS="${OBSHUB_TEST_WORKERS:-4}"
PARALLEL=()
if [ "$WORKERS" != "0" ]; then
  PARALLEL=(-n "$WORKERS" --dist loadfile)
fi

echo "== pytest (${WORKERS} workers)"
set +e
$BIN/python -m pytest "${PARALLEL[@]}" "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
if [ $rc -ne 0 ] && [ "$WORKERS" != "0" ]; then
  echo "test.sh: failures above ([gwN] names the worker); to rerun one in a single process:" \
    "OBSHUB_TEST_WORKERS=0 scripts/test.sh tests/PATH.py::TEST" >&2
fi
exit $rc
