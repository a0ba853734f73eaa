# Two commands for people: `make run` and `make test`. Everything they need is installed on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint lock lock-check browser-deps bench bench-delivery clean

# Tests run on the pinned versions a deploy gets: requirements-dev.txt (hash-checked), then the project itself.
$(STAMP): pyproject.toml requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed" or 0)'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# `make lock` after changing a dependency in pyproject.toml; `make lock-check` fails while the pins lag behind.
lock: $(STAMP)
	UV=$(abspath $(BIN)/uv) bin/lock

lock-check: $(STAMP)
	UV=$(abspath $(BIN)/uv) bin/lock --check

run: $(STAMP)
	bin/dev

# Browser tests need Chromium and axe-core; without them (no root, no npm) those tests skip and say why.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)); } || \
	  echo "note: Chromium is not installed and could not be installed here; browser tests will be skipped"
	@test -f node_modules/axe-core/axe.min.js || { command -v npm >/dev/null 2>&1 && npm ci --silent --no-audit --no-fund; } || \
	  echo "note: axe-core could not be installed (npm missing?); accessibility checks will be skipped"

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not browser"

# Lint, the formatter's check and the types (mypy's settings are in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# `make bench`: the performance budgets in one table (docs/performance.md). wrk drives the web server: it is
# installed from Debian's packages when missing and we are root; otherwise the bench stops and says so.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null)); } || \
	  { echo "wrk is missing and could not be installed here (needs root and apt-get): install wrk, then make bench" >&2; \
	    exit 1; }
	$(BIN)/python -m bench.suite

BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
# `make bench-delivery`: a burst of signups against a slow, rate-limited sandbox: none lost, none sent twice,
# never over the limit, and the backlog drained at the limit's pace, through faults and killed workers: once on
# SQLite, once on PostgreSQL with two worker processes, then through Kit's v4 API (four calls a signup). About
# twenty minutes.
bench-delivery: $(STAMP)
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.delivery --workers 2 --database-url $(BENCH_DATABASE_URL)
	$(BIN)/python -m bench.delivery --version v4 --count 150

clean:
	rm -rf $(VENV) node_modules instance .pytest_cache
