#!/usr/bin/env bash
# The static checks, as `make lint` runs them and scripts/test.sh runs them before pytest:
# ruff (lint + import order), ruff format, mypy --strict and the import-linter contracts, all
# configured in pyproject.toml. Every check runs, each timed; any failure fails the whole.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

failed=()
check() {  # NAME COMMAND...
  local name=$1 start=$EPOCHREALTIME
  shift
  echo "== $name"
  if ! "$@"; then
    failed+=("$name")
  fi
  awk -v n="$name" -v s="$start" -v e="$EPOCHREALTIME" 'BEGIN { printf "   (%s: %.1f s)\n", n, e - s }'
}

check "ruff check" $BIN/ruff check
check "ruff format --check" $BIN/ruff format --check
check "mypy --strict" $BIN/python -m mypy
check "import-linter" $BIN/lint-imports

if [ ${#failed[@]} -gt 0 ]; then
  echo "lint.sh: failed: ${failed[*]} (.venv/bin/ruff check --fix and .venv/bin/ruff format fix most ruff findings)" >&2
  exit 1
fi
