# Two commands: `make demo` and `make test`. Each sets up everything it needs on a fresh machine, then runs.
# Re-running is fast: the venv install is redone only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian's monitoring stack, used by the integration tests (and handy next to `aiops sim`).
SYSTEM_BINARIES := /usr/bin/prometheus /usr/bin/prometheus-alertmanager /usr/bin/promtool

.PHONY: demo test setup system-deps kube lint clean deploy-files bench-data

demo: setup system-deps
	$(VENV)/bin/aiops demo --scenario $(or $(SCENARIO),memory_leak)

# Two pytest workers (one per core here). A test file runs whole on one worker (--dist loadfile), and each worker
# starts the shared real kube-apiserver at most once. PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2

test: setup system-deps kube
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,glm]'
	touch $@

system-deps: $(SYSTEM_BINARIES)

$(SYSTEM_BINARIES) &:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager

# A real kube-apiserver + kube-controller-manager (v1.20.2) built from Debian's source package, cached under
# ~/.cache/aiops: ~10-17 min the first time on 2 cores, instant afterwards. Also the manifest renderers the deploy
# tests use (helm, kubectl kustomize), cached beside it: ~4 s the first time.
kube:
	tests/support/kube/build.sh
	tests/support/kube/render_tools.sh

# The kustomize base and the Helm chart carry copies of the stock playbooks and rules (neither tool reads files
# outside its own folder); tests/test_deploy_manifests.py fails when they drift. New files also go in
# deploy/kustomize/base/kustomization.yaml's configMapGenerator.
deploy-files:
	for d in playbooks rules; do for dst in deploy/kustomize/base/$$d deploy/helm/aiops/files/$$d; do \
		rm -f $$dst/*.yaml; cp $$d/*.yaml $$dst/; done; done

# The public benchmark data sets (NAB, Loghub 2k, PyRCA) are not in the repository and are never downloaded by a test
# or a benchmark: get the pinned snapshots named in bench/datasets.py, then link them with
# `make bench-data BENCH_DATA_SRC=/path/to/folder` (default ../shared/data). AIOPS_BENCH_DATA=/path overrides it.
BENCH_DATA_SRC ?= ../shared/data

bench-data:
	$(PYTHON) -m bench.datasets link $(BENCH_DATA_SRC)

lint: setup
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache
