# The two commands of the README: `make serve` and `make test`. Both do all set-up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup serve test lint protos browser vendor-js bench-latency bench-locomo bench-export

# Reinstall when a dependency list changes; editable installs pick up code changes by themselves.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e clients/python -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

serve: setup
	$(BIN)/persona serve

# Static checks first (fast), then the whole test suite (Neo4j included; `slow` is opt-in).
test: setup browser lint
	$(BIN)/pytest -q

# Debian's headless Chromium and its driver, for the viewer's browser test (skipped when there).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; else \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver; \
	fi

lint: setup
	$(BIN)/python scripts/gen_protos.py --check
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python scripts/vendor_js.py --check

# The viewer's graph library, copied again from its npm lock (after changing the version).
vendor-js: setup
	$(BIN)/python scripts/vendor_js.py

protos: setup
	$(BIN)/buf format -w
	$(BIN)/python scripts/gen_protos.py

# Benchmarks (see BENCHMARKS.md): figures are printed and written to bench/results/.
bench-locomo: setup
	$(BIN)/python bench/locomo.py ../shared/locomo/dev --out /tmp/persona-locomo-dev.json

bench-latency: setup
	$(BIN)/python bench/latency.py --sizes 1000,10000,100000 --out bench/results/latency_sqlite.json

bench-export: setup
	$(BIN)/python bench/export_memory.py --sizes 10000,100000 --out bench/results/export_memory.json
