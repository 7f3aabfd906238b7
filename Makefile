# rtcontrol: two commands on a fresh machine.
#   make run   - start the example app and the local CALLR emulator, place a few calls
#   make test  - lint, format check, type check and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: run test lint typecheck pytest bench bench-tools chaos install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

# PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: the browser tests use Debian's chromium.
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PIP) install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(VENV)/bin/rtcontrol demo

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

pytest: $(VENV)/.installed-dev
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The chaos soak for longer than the short run of `make test` (CHAOS_SECONDS=600).
CHAOS_SECONDS ?= 600
chaos: $(VENV)/.installed-dev
	RTCONTROL_CHAOS_SECONDS=$(CHAOS_SECONDS) $(VENV)/bin/pytest -m chaos -s tests/deploy/test_chaos.py $(PYTEST_ARGS)

docs: $(VENV)/.installed  ## regenerate the README's settings table from rtcontrol.Settings
	$(PY) -c "import re, pathlib; from rtcontrol.settings import settings_table as t; p = pathlib.Path('README.md'); s = p.read_text(); a, b = s.split('<!-- settings:start -->\n', 1); p.write_text(a + '<!-- settings:start -->\n' + t() + '<!-- settings:end -->' + b.split('<!-- settings:end -->', 1)[1])"

# The load generator and CPU pinning make bench needs (wrk; taskset from util-linux),
# installed from Debian's packages when missing, the way .ci/run installs nginx.
# Not root: through sudo when there is one. No apt-get: says what to install.
BENCH_TOOLS := wrk:wrk taskset:util-linux
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
bench-tools:
	@need=""; for pair in $(BENCH_TOOLS); do \
	    command -v "$${pair%%:*}" >/dev/null 2>&1 || need="$$need $${pair#*:}"; \
	done; \
	if [ -n "$$need" ]; then \
	    if ! command -v apt-get >/dev/null 2>&1; then \
	        echo "make bench needs:$$need (Debian package names); install them, then retry" >&2; \
	        exit 1; \
	    fi; \
	    echo "installing$$need (apt-get)"; \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	fi

bench: $(VENV)/.installed-dev bench-tools
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
