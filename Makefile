# Cascade — developer entry points. `make help` lists the documented targets.
# Two commands do all set-up on a fresh machine: `make up` and `make test`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export CASCADE_ARTIFACTS_DIR ?= $(CURDIR)/artifacts
export CASCADE_DATA_DIR ?= $(CURDIR)/data
DATASET ?= ml-latest-small
PYTEST_ARGS ?=

LOCAL_PKGS := libs/protos libs/core libs/platform libs/modelops libs/cli services/router services/retrieval \
	services/features services/ranking services/gateway services/stream services/colocated pipelines
PYPROJECTS := $(addsuffix /pyproject.toml,$(LOCAL_PKGS))

##@ Setup

$(VENV)/.installed: constraints.txt requirements/dev.txt $(PYPROJECTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# torch first, exactly pinned (a local CPU wheel on this machine class): nothing may pull a CUDA build.
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -r requirements/dev.txt $(addprefix -e ,$(LOCAL_PKGS))
	@# recbole only ships the ml-100k files we read from site-packages: never its (torch-pulling) deps.
	$(PIP) install -q --no-deps -c constraints.txt recbole
	@$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	@touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv and install every package (pinned by constraints.txt)

.PHONY: lock
lock: $(VENV)/.installed ## Re-pin constraints.txt from the current .venv
	@{ echo "# Exact pins for every third-party package (pip -c constraints.txt). Regenerate with \`make lock\`."; \
	  $(PIP) freeze --exclude-editable | grep -v '^cascade-' | sed 's/+cpu//'; } > constraints.txt

.PHONY: mlflow-env
mlflow-env: $(VENV)/.installed ## Build .tools/mlflow: the MLflow tracking server's own venv (SQLite store)
	$(PY) -m cascade_modelops.tracking_server setup

.PHONY: proto
proto: $(VENV)/.installed ## Regenerate the cascade-protos package from protos/
	$(PY) scripts/gen_protos.py

##@ Models and data

.PHONY: train
train: $(VENV)/.installed ## Train on $(DATASET) and register a new model version
	$(PY) -m cascade_pipelines.train --dataset $(DATASET) --artifacts $(CASCADE_ARTIFACTS_DIR)

.PHONY: artifacts
artifacts: $(VENV)/.installed ## Train only when no model is registered yet
	$(PY) -m cascade_pipelines.train --dataset $(DATASET) --artifacts $(CASCADE_ARTIFACTS_DIR) --if-missing

.PHONY: materialize
materialize: artifacts ## feast apply + materialize the served version into the online store
	$(PY) -m cascade_features.repo apply-materialize --version latest

##@ Run

.PHONY: up
up: materialize $(if $(filter 1 true yes,$(TRITON)),triton-env) ## Run the whole platform locally (Ctrl-C stops everything; TRITON=1: rankers on tritonserver)
	TRITON=$(TRITON) $(PY) scripts/run_local.py

.PHONY: recommend
recommend: ## Call Recommend through the CLI: make recommend USER_ID=1
	$(VENV)/bin/cascade recommend --user $(or $(USER_ID),1)

##@ Test

.PHONY: test
test: artifacts triton-env deploy-tools mlflow-env ## Every test: unit, integration, end-to-end, Triton and deploy checks
	$(PY) scripts/gen_protos.py --check
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(VENV)/.installed ## Unit tests only
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-integration
test-integration: artifacts ## Integration and end-to-end tests (real processes)
	$(VENV)/bin/pytest tests/integration tests/e2e $(PYTEST_ARGS)

.PHONY: clean
clean: ## Remove local state (online store, run logs); keeps .venv and artifacts
	rm -rf data .run

include Makefile.triton
include Makefile.deploy
include Makefile.bench
include Makefile.security

.PHONY: help
help: ## List documented targets
	@awk 'BEGIN {FS = ":.*##"} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*##/ {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
