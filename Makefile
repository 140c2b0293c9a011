# `make run`: set up, then the main job (dvc repro on params.yaml's profile). `make test`: set up, then every
# test (CI). `make test-fast`: the unit and small-integration tests only (a few minutes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Machines without internet: a directory of offline-weight tools (e.g. ../shared/tools); see scripts/offline-weights.sh.
OFFLINE_TOOLS ?=

.PHONY: setup run test test-fast weights clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	bash scripts/pip-install.sh $(BIN)/pip --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

weights:
ifneq ($(OFFLINE_TOOLS),)
	bash scripts/offline-weights.sh $(OFFLINE_TOOLS)
endif

run: setup weights
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro
	$(BIN)/avemo report

test: setup weights
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests

test-fast: setup weights
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow" tests

clean-venv:
	rm -rf $(VENV)
