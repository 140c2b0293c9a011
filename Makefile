# Two entry points: `make run` (set up, then the whole pipeline) and `make test` (set up, then the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Optional: a script that puts ImageNet weights into the torch cache on machines without internet.
OFFLINE_WEIGHTS_SCRIPT ?=

.PHONY: setup run test weights clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

weights:
ifneq ($(OFFLINE_WEIGHTS_SCRIPT),)
	bash $(OFFLINE_WEIGHTS_SCRIPT)
endif

run: setup weights
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro
	$(BIN)/python -m avemo.report metrics

test: setup weights
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests

clean-venv:
	rm -rf $(VENV)
