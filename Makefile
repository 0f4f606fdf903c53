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
.PHONY: help setup init init-public pipeline test test-floors test-fast format lint clean wheel bench \
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

DATASET ?= tpch
init-public: setup  ## write a public data set into the Bronze folder, offline (DATASET=tpch|tpcds|flights, SCALE=0.01; ARGS=--home DIR)
	$(AIMS) init-public $(DATASET) $(if $(SCALE),--scale $(SCALE),) $(ARGS)

test: setup  ## run the test suite
	$(PY) -m pytest -q $(ARGS)

# The core tests on the oldest versions the package supports (what the Fabric runtimes ship,
# pinned in ci/floors.txt), in their own venv with the core package and pytest only: no papermill,
# Jupyter or browser, as in Fabric. Run by .ci/run after `make test`.
FLOORS_VENV := .venv-floors
FLOORS_PY := $(FLOORS_VENV)/bin/python
FLOORS_STAMP := $(FLOORS_VENV)/.aims-installed
CORE_TESTS ?= tests/test_settings.py tests/test_environment.py tests/test_state.py \
	tests/test_checks.py tests/test_rules.py tests/test_storage.py tests/test_profiling.py \
	tests/test_validation.py tests/test_ingestion.py tests/test_repair.py tests/test_fabric_mount.py

$(FLOORS_STAMP): pyproject.toml ci/floors.txt
	@test -x $(FLOORS_PY) || $(PYTHON_BOOT) -m venv $(FLOORS_VENV)
	$(FLOORS_PY) -m pip install --quiet --upgrade pip
	$(FLOORS_PY) -m pip install --quiet -c ci/floors.txt -e . pytest pytest-timeout
	@touch $(FLOORS_STAMP)

test-floors: $(FLOORS_STAMP)  ## core tests on the Fabric runtimes' versions (ci/floors.txt) in .venv-floors
	$(FLOORS_PY) -m pip freeze --exclude-editable | grep -iE '^(pandas|numpy|pyarrow|deltalake|duckdb|great.expectations)=='
	$(FLOORS_PY) -m pytest -q -p no:cacheprovider $(CORE_TESTS) $(ARGS)

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

# --- monitoring, insights, DQ modeling (notebooks 03, 06, 07) ----------------------------------
.PHONY: monitor insights dq-model

monitor: setup  ## DQ figures, targets and freshness of the latest validation; writes the HTML dashboard
	$(AIMS) monitor $(ARGS)

insights: setup  ## trends across runs: new failures, most failing rules, tables getting worse
	$(AIMS) insights $(ARGS)

dq-model: setup  ## DQ matrix, anomalies in the metric history, score forecasts (refreshes the dashboard)
	$(AIMS) dq-model $(ARGS)

# --- schema drift, Gold star schema, BI KPIs (notebooks 04, 05, 08) ---------------------------
.PHONY: drift gold bi

drift: setup  ## schema drift: Bronze vs rule files and vs the previous run; writes outputs/reports/schema_drift_report.{json,html}
	$(AIMS) drift $(if $(TABLES),--tables $(TABLES),) $(ARGS)

gold: setup  ## build the Gold star schema (FACT_Asset_Inventory + DIM_*) from Silver and check its integrity
	$(AIMS) build-gold $(ARGS)

bi: setup  ## BI KPIs over Gold exported for Power BI (outputs/reports/bi_kpis.{csv,parquet})
	$(AIMS) bi-kpis $(ARGS)

# --- orchestration: run_all.py and notebooks 00-08 ------------------------------------------
# Executed notebooks go to <outputs>/runs/<run_id>/ (the settings' runs folder), next to the
# metrics each phase records; the run log goes to config/validation_results/.
NEW_RUN_ID = $(PY) -c 'from aims_nb_utils.state import new_run_id; print(new_run_id())'
RUNS_DIR = $(PY) -c 'from aims_nb_utils.settings import load_settings; print(load_settings().paths.runs)'
BRONZE_DIR = $(PY) -c 'from aims_nb_utils.settings import load_settings; print(load_settings().paths.bronze)'

pipeline: setup  ## run every enabled phase end to end via run_all.py (creates the sample lake first if Bronze is empty)
	@if ! ls "$$($(BRONZE_DIR))"/*.parquet > /dev/null 2>&1; then $(AIMS) init --corrupt; fi
	$(PY) run_all.py --kernel aims $(ARGS)

run-orchestration: setup  ## execute notebook 00 with papermill (kernel aims); it runs the enabled phases 01-08
	@run_id=$$($(NEW_RUN_ID)); out="$$($(RUNS_DIR))/$$run_id"; mkdir -p "$$out"; \
	echo "executed notebooks: $$out"; \
	$(PY) -m papermill notebooks/00_AIMS_Orchestration.ipynb "$$out/00_AIMS_Orchestration.ipynb" \
		-k aims -p run_id "$$run_id" -p kernel_name aims -p progress lines \
		--log-output --no-progress-bar $(ARGS)

run-notebooks: setup  ## execute notebooks 01-08 one by one with papermill (kernel aims), stopping at the first failure
	@run_id=$$($(NEW_RUN_ID)); out="$$($(RUNS_DIR))/$$run_id"; mkdir -p "$$out"; \
	for nb in notebooks/0[1-8]_*.ipynb; do \
		echo "== $$nb -> $$out/$$(basename $$nb)"; \
		$(PY) -m papermill "$$nb" "$$out/$$(basename $$nb)" -k aims -p run_id "$$run_id" \
			--no-progress-bar $(ARGS) || { echo "FAILED: $$nb (see $$out/$$(basename $$nb))"; exit 1; }; \
	done; echo "all notebooks executed: $$out"

# --- profiling and thresholds (profiling.py, rules.py) -----------------------------------------
profile: setup  ## profile Bronze tables (TABLES=... for some) on all rows into config/data_quality/; hand-edited files are kept (ARGS=--force replaces them after a backup)
	$(AIMS) profile $(if $(TABLES),--tables $(TABLES),) $(ARGS)

adjust-thresholds: setup  ## set quality_thresholds.critical and .high to THRESHOLD (default 95) in the rule files; ARGS=--dry-run shows the diff only
	$(AIMS) adjust-thresholds --threshold $(THRESHOLD) $(if $(TABLES),--tables $(TABLES),) $(ARGS)

# --- validation with Great Expectations (validation.py, checks.py) ------------------------------
validate-dq: setup  ## validate every table (TABLES=... for some) with Great Expectations on all rows; writes config/validation_results/validation_results.json (ARGS=--data-docs: GX Data Docs in outputs/data_docs); exit 1 if a table is ERROR
	$(AIMS) validate-dq $(if $(TABLES),--tables $(TABLES),) $(ARGS)

dq-pipeline: setup profile adjust-thresholds validate-dq  ## profile, set thresholds (THRESHOLD=95), validate: the DQ phase in one command

# --- Bronze -> Silver: repair, source validation, ingestion (repair.py, schema.py, ingestion.py) --
BRONZE_DIR = $(PY) -c 'from aims_nb_utils.settings import load_settings; print(load_settings().paths.bronze)'
RULES_DIR = $(PY) -c 'from aims_nb_utils.settings import load_settings; print(load_settings().paths.rules)'

repair: setup  ## salvage unreadable Bronze files (originals kept in <bronze>/_backup/<time>/); ARGS=--dry-run reports only
	$(AIMS) repair $(if $(TABLES),--tables $(TABLES),) $(ARGS)

validate: setup  ## Bronze files: readable, rows, size, columns vs rule files; fails if a table cannot be ingested
	$(AIMS) validate-source $(if $(TABLES),--tables $(TABLES),) $(ARGS)

ingest-all: setup  ## validate and load every Bronze table into Silver + quarantine, incrementally (ARGS=--force reloads all)
	$(AIMS) ingest-all $(ARGS)

ingest-assets: setup  ## validate and load aims_assets only
	$(AIMS) ingest aims_assets $(ARGS)

ingest-attrs: setup  ## validate and load aims_attributes only
	$(AIMS) ingest aims_attributes $(ARGS)

watermarks: setup  ## per table: latest LASTUPDATED, Bronze fingerprint, Silver and quarantine rows
	$(AIMS) watermarks $(ARGS)

history: setup  ## the last 20 loads: rows in / to Silver / quarantined, status, error
	$(AIMS) history $(ARGS)

data-pipeline: setup  ## Bronze -> Silver end to end: init (if Bronze is empty), repair, profile (if no rule files), validate, ingest-all
	@if ! ls "$$($(BRONZE_DIR))"/*.parquet > /dev/null 2>&1; then $(AIMS) init --corrupt; fi
	$(AIMS) repair
	@if ! ls "$$($(RULES_DIR))"/*_validation.yml > /dev/null 2>&1; then $(AIMS) profile; fi
	$(AIMS) validate-source
	$(AIMS) ingest-all $(ARGS)
