# The two commands a newcomer needs: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM ?= /usr/bin/chromium
export CHROMIUM

.PHONY: up test lint typecheck unit browser bench clean

# Create the virtualenv and install the project with its dev tools; redone when pyproject changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m local setup
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/python -m local up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The chat page's tests drive the distribution's Chromium, never a browser download: installed
# with apt when missing (CI runs as root); where that cannot be done, stop and say how.
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Chromium (apt) for the chat page's browser tests"; \
	    apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium >/dev/null; \
	  fi; }
	@test -x $(CHROMIUM) || { echo "The chat page's tests need Chromium at $(CHROMIUM): install it \
	(sudo apt-get install -y chromium) or set CHROMIUM=/path/to/chromium." >&2; exit 1; }

unit: $(STAMP) browser
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
