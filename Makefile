# custseg — one entry point for people and CI. Everything the project needs is installed from here.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCALE ?= 100k
WAREHOUSE ?= duckdb

export AIRFLOW_HOME ?= $(CURDIR)/airflow_home
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT := 300
export GX_ANALYTICS_ENABLED := False
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := False

.PHONY: install lock demo test lint docs bench bench-scaling bench-uplift clean

# requirements.lock pins every package, direct and transitive, to the versions the suite was run with;
# `make lock` refreshes it from pyproject.toml, keeping the pins it can (add --upgrade to move them all).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --output-file requirements.lock $(LOCK_ARGS)

demo: install
	$(BIN)/custseg demo

test: install
	$(BIN)/ruff check .
	$(BIN)/sqlfluff lint dbt_project/models dbt_project/tests dbt_project/macros
	# -v: each test is named as it starts (the first ones wait minutes for the shared end-to-end night)
	$(BIN)/python -m pytest -v $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/sqlfluff lint dbt_project/models dbt_project/tests dbt_project/macros

docs: install
	$(BIN)/custseg docs

bench: install
	$(BIN)/python -m bench.run --scale $(SCALE) --warehouse $(WAREHOUSE) $(BENCH_ARGS)

bench-scaling: install
	$(BIN)/python -m bench.run --scaling $(BENCH_ARGS)

# coverage of campaign_uplift's 95% intervals over 50 generated datasets (~35 min; bench/uplift_coverage.py)
bench-uplift: install
	$(BIN)/python -m bench.uplift_coverage $(BENCH_ARGS)

clean:
	rm -rf data/warehouse.duckdb data/landing data/dbt data/logs airflow_home dbt_project/target dbt_project/logs
