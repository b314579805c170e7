# kubeinfer — one entry point for setting up, running and testing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv controlplane cluster-up cluster-down test test-unit test-cluster lint

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[operator,dev,llamacpp,transformers,runtime-test]'
	touch $@

controlplane:
	bash hack/controlplane/build.sh

# Starts the local control plane (building it the first time) and prints its KUBECONFIG.
cluster-up: venv controlplane
	@bash hack/controlplane/up.sh

cluster-down:
	@bash hack/controlplane/down.sh

# Everything: unit, integration (starts the control plane unless KUBECONFIG names a cluster)
# and end-to-end tests with real engines.
test: venv controlplane
	$(PY) -m pytest -q -ra

test-unit: venv
	$(PY) -m pytest -q -ra -m "not cluster and not engine"

test-cluster: venv controlplane
	$(PY) -m pytest -q -ra -m cluster

lint: venv
	$(VENV)/bin/ruff check operator runtime tests hack
	$(VENV)/bin/mypy operator/kubeinfer runtime/kubeinfer_runtime

# The ModelDeployment CRD, regenerated from the API models (a unit test checks it is current).
crd: venv
	$(VENV)/bin/kubeinfer crd -o crds/

# Time of one engine decision over 1,000 nodes, with a 10-node baseline.
bench-decide: venv
	$(PY) benchmarks/bench_decide.py
