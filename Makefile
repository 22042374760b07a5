# The two commands a newcomer needs: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint typecheck unit bench clean

# Create the virtualenv and install the project with its dev tools; redone when pyproject changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m local setup
	touch $(STAMP)

# System packages the suite needs, from Debian: caddy (tests/deploy/test_caddy.py runs the real
# deploy/Caddyfile) and chromium (tests/page/ drive the chat page in it: the distribution's
# browser, never a browser download; CHROMIUM names another). Installed once with apt-get;
# without apt this stops here and says why.
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM
SYSTEM_STAMP := $(VENV)/.system-packages
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(SYSTEM_STAMP): $(STAMP)
	@missing=""; command -v caddy >/dev/null || missing="caddy"; test -x $(CHROMIUM) || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "make: the tests need$$missing (Debian: apt-get install -y$$missing); apt-get is not available here, install them yourself" >&2; exit 1; }; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; }; \
	fi
	@command -v caddy >/dev/null || { echo "make: caddy is still missing after apt-get" >&2; exit 1; }
	@test -x $(CHROMIUM) || { echo "make: no Chromium at $(CHROMIUM) after apt-get (apt-get install -y chromium, or set CHROMIUM=/path/to/chromium)" >&2; exit 1; }
	touch $(SYSTEM_STAMP)

up: $(STAMP)
	$(BIN)/python -m local up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(SYSTEM_STAMP)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
