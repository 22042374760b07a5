# How `sam build` builds each function and the layer (template.yaml: BuildMethod: makefile).
# Included by functions/*/Makefile and layers/servicekit/Makefile; sam runs their
# build-<LogicalId> target with ARTIFACTS_DIR set.
#
# Like sam's own python3.12 build — wheels for Lambda's arm64 — plus one step: every module is
# compiled to bytecode. Lambda's filesystem is read-only, so without it Python compiles every
# module again at each cold start (measured, chat's import: 863-949 ms as built, 336-497 ms
# compiled). `unchecked-hash`: the .pyc files are used as they are, whatever the mtimes the zip
# gives the sources. The bytecode must match Lambda's Python: python3.12 on PATH, or
# `sam build --use-container`.
PYTHON ?= python3.12
PIP_TARGET_FLAGS := --quiet --no-compile --platform manylinux2014_aarch64 --implementation cp \
	--python-version 3.12 --only-binary=:all: --upgrade

define check_python
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else "sam build: the bytecode must be Python 3.12 (the functions runtime); put python3.12 on PATH or use sam build --use-container")'
endef

define compile
	find "$(1)" -name __pycache__ -prune -exec rm -rf {} +
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(1)" > /dev/null
endef
