# Two commands matter: `make run` (hub + demo data on the embedded store) and `make test`.
# Both build the virtualenv first, so a fresh machine needs only python3 (>= 3.11).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test bench lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/obshub serve --demo

test: $(STAMP)
	scripts/test.sh

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

lint: $(STAMP)
	scripts/lint.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache
