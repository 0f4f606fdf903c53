# AIMS DQ Platform. Every target that needs Python depends on `setup`, so a fresh clone needs
# nothing typed first: `make pipeline` and `make test` set up .venv themselves.
SHELL := /bin/bash
PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.aims-installed
AIMS := $(PY) -m aims_nb_utils
export GX_ANALYTICS_ENABLED := False
TABLES ?=
THRESHOLD ?= 95
SCALE ?=
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup init pipeline test test-fast format lint clean wheel bench \
	profile adjust-thresholds validate-dq dq-pipeline repair validate ingest-all ingest-assets \
	ingest-attrs watermarks history run-orchestration run-notebooks data-pipeline settings

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --prefix $(VENV) --name aims --display-name "AIMS (.venv)" > /dev/null
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv, install the package with dev extras, register the 'aims' kernel

settings: setup  ## show resolved settings and where each value came from
	$(AIMS) settings

init: setup  ## generate the bundled sample Bronze lake (SCALE=1.0 for full size)
	$(AIMS) init --corrupt $(if $(SCALE),--scale $(SCALE),) $(ARGS)

test: setup  ## run the test suite
	$(PY) -m pytest -q $(ARGS)

format: setup  ## format with black and fix with ruff
	$(VENV)/bin/ruff check --fix aims_nb_utils tests bench run_all.py
	$(VENV)/bin/black aims_nb_utils tests bench run_all.py

lint: setup  ## check black and ruff
	$(VENV)/bin/ruff check aims_nb_utils tests bench run_all.py
	$(VENV)/bin/black --check aims_nb_utils tests bench run_all.py

clean:  ## remove generated outputs, executed notebooks, results and caches (never Bronze data)
	rm -rf outputs/runs outputs/dashboards outputs/reports outputs/executed build dist *.egg-info
	rm -rf data/silver data/gold data/quarantine data/state
	rm -f config/validation_results/*.json
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print | xargs rm -rf
	rm -rf .pytest_cache .ruff_cache

wheel: setup  ## build the aims_nb_utils wheel into dist/ (for a Fabric Environment)
	$(PY) -m build --wheel --outdir dist .
