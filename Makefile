# The two commands of the README's Quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What `make` installs: every pinned version is in constraints.txt (`make lock` refreshes it).
EXTRAS := test,phone,postgres,redis,geoip
CONSTRAINTS := constraints.txt

.PHONY: demo test test-fast lint format install lock clean translations screenshots \
	vendor-oidc-client-ts vendor-zxing-library vendor-axe-core

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml setup.py $(CONSTRAINTS)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

# Re-resolve constraints.txt from pyproject.toml's ranges: the newest versions they allow,
# installed into a throw-away venv (every extra, bench's too) and frozen, pip included.
# Not setuptools: the venv brings its own, and the build needs a newer one (>=68).
lock:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install --quiet -e '.[$(EXTRAS),bench]'; \
	{ echo "# Every package that \`make install\` and the bench install, pinned: made by \`make lock\`"; \
	  echo "# from pyproject.toml's ranges with $$("$$tmp/venv/bin/python" -V). Do not edit by hand."; \
	  "$$tmp/venv/bin/python" -m pip freeze --all --exclude-editable | grep -v '^setuptools=='; \
	} > $(CONSTRAINTS)
	@echo "$(CONSTRAINTS) refreshed; \`make install\` installs it"

demo: $(STAMP)
	$(BIN)/idp demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Both run the suite in parallel processes (pytest-xdist; each module that tests/conftest.py
# names in ONE_WORKER runs on one); a plain `pytest path::test` stays a single process, for
# debugging. Bytecode is
# cached even where PYTHONDONTWRITEBYTECODE is set: otherwise every worker rewrites every
# test module's asserts again, and every `idp` process compiles the package again.
TEST_WORKERS ?= 4
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(TEST_WORKERS)

test: lint
	$(PYTEST)

# The inner loop: SQLite only, no browser, no multi-process cluster (`make test` runs all).
test-fast: $(STAMP)
	$(PYTEST) -q -k "not postgres" --ignore=tests/browser \
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
	rm -rf $(VENV) instance .pytest_cache .mypy_cache

# The browser tests' single-page app uses oidc-client-ts's browser build, vendored in
# tests/browser/vendor so that the tests (and CI) never need npm. This refreshes it from
# the npm registry: `make vendor-oidc-client-ts [OIDC_CLIENT_TS_VERSION=x.y.z]`.
OIDC_CLIENT_TS_VERSION ?= 3.5.0
VENDOR := tests/browser/vendor
vendor-oidc-client-ts:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cd "$$tmp" && npm pack --silent oidc-client-ts@$(OIDC_CLIENT_TS_VERSION) >/dev/null; \
	tar xzf oidc-client-ts-*.tgz; \
	jwt=$$(node -p "require('./package/package.json').dependencies['jwt-decode']"); \
	mkdir jwt && npm pack --silent "jwt-decode@$$jwt" >/dev/null && tar xzf jwt-decode-*.tgz -C jwt; \
	cd - >/dev/null; \
	cp "$$tmp/package/dist/browser/oidc-client-ts.js" $(VENDOR)/oidc-client-ts.js; \
	cp "$$tmp/package/LICENSE" $(VENDOR)/LICENSE.oidc-client-ts; \
	cp "$$tmp/jwt/package/LICENSE" $(VENDOR)/LICENSE.jwt-decode; \
	version=$$(node -p "require('$$tmp/package/package.json').version"); \
	jwtv=$$(node -p "require('$$tmp/jwt/package/package.json').version"); \
	sum=$$(sha256sum $(VENDOR)/oidc-client-ts.js | cut -d' ' -f1); \
	sed -i -e "s/^- oidc-client-ts version: .*/- oidc-client-ts version: $$version/" \
	       -e "s/^- jwt-decode version (bundled in it): .*/- jwt-decode version (bundled in it): $$jwtv/" \
	       -e "s/^- sha256 of oidc-client-ts.js: .*/- sha256 of oidc-client-ts.js: $$sum/" $(VENDOR)/README.md; \
	echo "vendored oidc-client-ts $$version (sha256 $$sum)"

# The phone app's in-app scanner (idp/static/app/scanner.js) decodes with ZXing's browser
# build where the browser has no BarcodeDetector; idp/static/vendor/README.md says why ZXing.
# This refreshes it from the npm registry: `make vendor-zxing-library [ZXING_LIBRARY_VERSION=x.y.z]`.
ZXING_LIBRARY_VERSION ?= 0.23.0
APP_VENDOR := idp/static/vendor
vendor-zxing-library:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cd "$$tmp" && npm pack --silent @zxing/library@$(ZXING_LIBRARY_VERSION) >/dev/null; \
	tar xzf zxing-library-*.tgz; \
	tce=$$(node -p "require('./package/package.json').dependencies['ts-custom-error']"); \
	mkdir tce && npm pack --silent "ts-custom-error@$$tce" >/dev/null && tar xzf ts-custom-error-*.tgz -C tce; \
	cd - >/dev/null; \
	cp "$$tmp/package/umd/index.min.js" $(APP_VENDOR)/zxing-library.min.js; \
	cp "$$tmp/package/LICENSE" $(APP_VENDOR)/LICENSE.zxing-library; \
	cp "$$tmp/tce/package/LICENSE" $(APP_VENDOR)/LICENSE.ts-custom-error; \
	version=$$(node -p "require('$$tmp/package/package.json').version"); \
	tcev=$$(node -p "require('$$tmp/tce/package/package.json').version"); \
	sum=$$(sha256sum $(APP_VENDOR)/zxing-library.min.js | cut -d' ' -f1); \
	sed -i -e "s/^- @zxing\/library version: .*/- @zxing\/library version: $$version/" \
	       -e "s/^- ts-custom-error version (bundled in it): .*/- ts-custom-error version (bundled in it): $$tcev/" \
	       -e "s/^- sha256 of zxing-library.min.js: .*/- sha256 of zxing-library.min.js: $$sum/" $(APP_VENDOR)/README.md; \
	echo "vendored @zxing/library $$version (sha256 $$sum)"

# The browser tests' accessibility checks (tests/browser/a11y.py) run axe-core, vendored in
# tests/browser/vendor like oidc-client-ts: `make vendor-axe-core [AXE_CORE_VERSION=x.y.z]`.
AXE_CORE_VERSION ?= 4.14.1
vendor-axe-core:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cd "$$tmp" && npm pack --silent axe-core@$(AXE_CORE_VERSION) >/dev/null; \
	tar xzf axe-core-*.tgz; \
	cd - >/dev/null; \
	cp "$$tmp/package/axe.min.js" $(VENDOR)/axe.min.js; \
	cp "$$tmp/package/LICENSE" $(VENDOR)/LICENSE.axe-core; \
	cp "$$tmp/package/LICENSE-3RD-PARTY.txt" $(VENDOR)/LICENSE-3RD-PARTY.axe-core.txt; \
	version=$$(node -p "require('$$tmp/package/package.json').version"); \
	sum=$$(sha256sum $(VENDOR)/axe.min.js | cut -d' ' -f1); \
	sed -i -e "s/^- axe-core version: .*/- axe-core version: $$version/" \
	       -e "s/^- sha256 of axe.min.js: .*/- sha256 of axe.min.js: $$sum/" $(VENDOR)/README.md; \
	echo "vendored axe-core $$version (sha256 $$sum)"

# --- Benchmarks (issue 6): `python -m bench`; results in bench/results/<date>.{json,md,png} ---
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=
BENCH_PEER_MODE ?= --quick

.PHONY: bench bench-quick bench-peer

$(BENCH_STAMP): $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench --full --profile $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

bench-peer: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_PEER_MODE) --peer $(BENCH_ARGS)
