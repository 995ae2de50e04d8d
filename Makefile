# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench lint fuse clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# Later features mount FUSE filesystems; the Debian package brings fusermount3 and libfuse3.
fuse:
	@command -v fusermount3 >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq fuse3 >/dev/null; }

demo: $(STAMP) fuse
	$(BIN)/fluidv demo

lint: $(STAMP)
	$(BIN)/lint-imports

test: $(STAMP) fuse lint
	$(BIN)/python -m pytest tests

bench: $(STAMP) fuse
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python -m pytest benchmarks --benchmark-columns=min,mean,max,rounds \
		--benchmark-sort=name $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .fluidv .benchmarks
