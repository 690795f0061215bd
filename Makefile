# Developer and CI entry points. `make test` works on a fresh Debian 12 / Ubuntu machine:
# it installs the system tools the tests need (docker-registry, skopeo) and the venv.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PYTEST_ARGS ?=

# root runs apt-get directly; anyone else goes through sudo
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: deps venv test test-fast demo clean

## deps: install docker-registry, skopeo, openssl (and python3-venv) with apt-get when missing
deps:
	@pkgs=""; \
	command -v docker-registry >/dev/null 2>&1 || pkgs="$$pkgs docker-registry"; \
	command -v skopeo >/dev/null 2>&1 || pkgs="$$pkgs skopeo"; \
	command -v openssl >/dev/null 2>&1 || pkgs="$$pkgs openssl"; \
	if [ ! -x $(VENV)/bin/python ] && ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
	  pkgs="$$pkgs python3-venv"; \
	fi; \
	if [ -n "$$pkgs" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "error: missing$$pkgs and no apt-get to install them; install them by hand" >&2; exit 1; \
	  fi; \
	  if [ -n "$(SUDO)" ] && ! command -v sudo >/dev/null 2>&1; then \
	    echo "error: missing$$pkgs; not root and no sudo: install them as root" >&2; exit 1; \
	  fi; \
	  echo ">> installing$$pkgs with apt-get"; \
	  $(APT) update; \
	  $(APT) install -y --no-install-recommends $$pkgs; \
	fi

## venv: .venv with the package installed editable plus its test extra
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | deps
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: Python >= 3.11 is required, but $(PYTHON) is '$$($(PYTHON) -V 2>&1 || echo missing)'." >&2; \
	  echo "       Run e.g. 'make $(or $(MAKECMDGOALS),test) PYTHON=python3.11'." >&2; exit 1; }
	@if [ -e $(VENV) ] && ! $(VENV)/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
	  echo ">> $(VENV) is broken or older than Python 3.11: recreating it"; rm -rf $(VENV); \
	fi
	@[ -x $(VENV)/bin/python ] || { echo ">> creating $(VENV) with $$($(PYTHON) -V)"; $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -e '.[test]'
	@# pip compiles a wheel it installs; compile the editable source the same way (start-up)
	$(VENV)/bin/python -m compileall -q src/ocimodel
	@touch $@

## test: run the test suite (extra pytest arguments: make test PYTEST_ARGS="-k push") in two
##       passes: everything but the `serial` tests on TEST_WORKERS pytest-xdist processes
##       (each with its own docker-registry and temporary directories; a test file stays on
##       one worker, so its module fixtures start once), then the `serial` tests (racing
##       writers, signals, deadlines) alone in one process. See docs/testing.md.
##       A pass that selects no test (PYTEST_ARGS picked none of its tests) is no failure.
TEST_WORKERS ?= 2
test: deps venv
	@failed=0; \
	for pass in "-n $(TEST_WORKERS) --dist loadfile --serial=skip" "--serial=only"; do \
	  echo ">> pytest $$pass"; \
	  $(VENV)/bin/python -m pytest -q $$pass $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] || failed=$$rc; }; \
	done; \
	exit $$failed

## test-fast: only the tests that start no docker-registry and are not marked slow (seconds;
##            `make test` runs them too). Markers: tests/conftest.py, pyproject.toml.
test-fast: venv
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) -m "not registry and not slow" $(PYTEST_ARGS)

## demo: push, inspect, list and pull an example model in ./demo
demo: deps venv
	bash examples/demo.sh

## clean: remove the venv and generated files
clean:
	rm -rf $(VENV) demo build dist .pytest_cache
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +

## bench: speed benchmark against skopeo and oras-py on a local registry (see benchmarks/README.md)
##        e.g. make bench BENCH_ARGS="--quick"   or   make bench BENCH_ARGS="--with-4g --out results.md"
BENCH_ARGS ?=
.PHONY: bench
bench: deps venv
	$(VENV)/bin/python benchmarks/run.py $(BENCH_ARGS)
