# The two commands of the README's Quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format install clean translations screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/idp demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest

# The inner loop: SQLite only, no browser, no multi-process cluster (`make test` runs all).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -k "not postgres" --ignore=tests/browser \
		--ignore=tests/integration/test_cluster.py

# Extract the messages, merge them into each language's catalog, compile the catalogs.
translations: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --no-location --sort-output \
		--project QR-IdP -o idp/translations/messages.pot .
	$(BIN)/pybabel update -i idp/translations/messages.pot -d idp/translations --width 100
	$(BIN)/pybabel compile -d idp/translations

# The README's pictures: the browser tests, saving a screenshot of each state.
screenshots: $(STAMP)
	IDP_SCREENSHOTS=docs/images $(BIN)/python -m pytest -q tests/browser

clean:
	rm -rf $(VENV) instance .pytest_cache

# --- Benchmarks (issue 6): `python -m bench`; results in bench/results/<date>.{json,md,png} ---
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=
BENCH_PEER_MODE ?= --quick

.PHONY: bench bench-quick bench-peer

$(BENCH_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench --full --profile $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

bench-peer: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_PEER_MODE) --peer $(BENCH_ARGS)
