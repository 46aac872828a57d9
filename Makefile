# txmesh — the commands the README names. `make help` lists them.

CARGO ?= cargo
# The toolchain cargo-fuzz needs (sanitizers are nightly-only).
FUZZ_TOOLCHAIN ?= +nightly
FUZZ_TARGET ?= frame_decode
FUZZ_SECONDS ?= 600
FUZZ_CORPUS := fuzz/corpus/$(FUZZ_TARGET)
# rustfmt colors its diffs even into a pipe; follow cargo's setting (CI sets it to never).
RUSTFMT_COLOR := $(if $(filter never,$(CARGO_TERM_COLOR)),never,auto)

.DEFAULT_GOAL := help
.PHONY: help deps deps-libclang deps-python demo test chart-test soak lint fmt-check clippy build image bench fuzz fuzz-corpus clean

help:
	@echo 'make demo    deps, then build in release mode and run txmesh demo (DEMO_ARGS=...)'
	@echo 'make deps    install what the build and tests need (libclang, a Python venv), if missing'
	@echo 'make test    deps, then cargo fmt --check, clippy -D warnings, the chart test, cargo test'
	@echo 'make chart-test  lint, render and schema-check the Helm chart offline (TXMESH_BLESS=1 rewrites its golden files)'
	@echo 'make soak    kill -9 the leader of a 3-node coordinator group 20 times, then 40 times as a Seata client sees it'
	@echo 'make lint    cargo fmt --check and clippy -D warnings'
	@echo 'make build   cargo build --workspace'
	@echo 'make image   build the container image with docker (IMAGE=..., default txmesh/txmesh:<version>)'
	@echo 'make bench   the codec benchmark (results: docs/benchmarks.md)'
	@echo 'make fuzz    fuzz the frame decoder for FUZZ_SECONDS (default 600) on nightly'
	@echo 'make clean   remove build output (target/, fuzz/target/)'

# ---------------------------------------------------------------------------------------------
# System dependencies. Idempotent: each step checks first and only installs what is missing.

deps: deps-libclang deps-python

# libclang is what bindgen (RocksDB's build script) loads. Found through LIBCLANG_PATH, the
# LLVM install directories, or the usual library directories; installed with apt as root.
# Note: libclang-cpp.so is a different library and does not count.
LIBCLANG_DIRS := $(LIBCLANG_PATH) /usr/lib/llvm-*/lib /usr/lib/*-linux-gnu /usr/lib64 /usr/lib /usr/local/lib

define find_libclang
	for dir in $(LIBCLANG_DIRS); do \
	    if [ -f "$$dir" ]; then echo "$$dir"; exit 0; fi; \
	    for lib in "$$dir"/libclang.so* "$$dir"/libclang-[0-9]*.so*; do \
	        if [ -e "$$lib" ]; then echo "$$lib"; exit 0; fi; \
	    done; \
	done; exit 1
endef

deps-libclang:
	@if lib=$$( $(find_libclang) ); then \
	    echo "deps: libclang found: $$lib"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo 'deps: libclang missing; installing libclang-dev with apt-get'; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    { apt-get update && apt-get install -y --no-install-recommends libclang-dev; } || exit 1; \
	    if lib=$$( $(find_libclang) ); then echo "deps: libclang installed: $$lib"; \
	    else echo 'deps: installing libclang-dev did not provide libclang.so' >&2; exit 1; fi; \
	else \
	    echo 'deps: libclang is missing (bindgen needs it to build RocksDB). Install it with:' >&2; \
	    echo '  Debian/Ubuntu:  sudo apt-get install libclang-dev' >&2; \
	    echo '  Fedora/RHEL:    sudo dnf install clang-devel' >&2; \
	    echo '  macOS:          xcode-select --install   (or: brew install llvm)' >&2; \
	    echo 'or point LIBCLANG_PATH at the directory holding libclang.so.' >&2; \
	    exit 1; \
	fi

# The Python environment for the Kubernetes checks. kubernetes-validate: txmesh-operator's golden
# tests run it on every object the operator builds (they find it through TXMESH_VENV; without
# it they skip that check), and so does the chart test. helm-python-sdk: Helm's own engine as
# a Python package, so the chart test lints and renders the chart with no helm binary; pinned
# exactly, as the test also calls its native render for the options its wrapper lacks.
# Created once, then reused; a pin change reinstalls.
TXMESH_VENV ?= $(CURDIR)/.venv
# Made absolute (a relative one is taken from this directory): cargo runs each crate's tests
# in that crate's directory.
override TXMESH_VENV := $(abspath $(TXMESH_VENV))
export TXMESH_VENV
KUBERNETES_VALIDATE_VERSION := 1.37.0
HELM_PYTHON_SDK_VERSION := 0.2.2
PYTHON_PINS := kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION) helm-python-sdk==$(HELM_PYTHON_SDK_VERSION)

deps-python:
	@if [ "$$("$(TXMESH_VENV)/bin/kubernetes-validate" --version 2>/dev/null)" = "$(KUBERNETES_VALIDATE_VERSION)" ] && \
	    [ "$$("$(TXMESH_VENV)/bin/python" -c 'import helm_python; print(helm_python.__version__)' 2>/dev/null)" = "$(HELM_PYTHON_SDK_VERSION)" ]; then \
	    echo "deps: kubernetes-validate $(KUBERNETES_VALIDATE_VERSION) and helm-python-sdk $(HELM_PYTHON_SDK_VERSION) found in $(TXMESH_VENV)"; \
	    exit 0; \
	fi; \
	if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo 'deps: the Python venv module is missing; installing python3-venv with apt-get'; \
	        export DEBIAN_FRONTEND=noninteractive; \
	        { apt-get update && apt-get install -y --no-install-recommends python3-venv; } || exit 1; \
	    else \
	        echo 'deps: Python 3 with the venv module is missing (Debian/Ubuntu: sudo apt-get install python3-venv)' >&2; \
	        exit 1; \
	    fi; \
	fi; \
	echo "deps: installing $(PYTHON_PINS) into $(TXMESH_VENV)"; \
	python3 -m venv "$(TXMESH_VENV)" && \
	"$(TXMESH_VENV)/bin/pip" install --quiet --disable-pip-version-check $(PYTHON_PINS)

# ---------------------------------------------------------------------------------------------
# Build, check, test.

# The README's first command: transfers on a local coordinator group with a leader kill.
# `make demo DEMO_ARGS='--transfers 10000 --keep'`; `txmesh demo --help` lists the options.
DEMO_ARGS ?=
demo: deps
	$(CARGO) run --release -p txmesh -- demo $(DEMO_ARGS)

test: deps lint chart-test
	$(CARGO) test --workspace

# The Helm chart without helm or a cluster: lint, render each values file in charts/tests/values,
# check the objects against the Kubernetes schemas and the golden renders (charts/tests/golden;
# TXMESH_BLESS=1 rewrites them), and that bad values are refused.
chart-test: deps-python
	"$(TXMESH_VENV)/bin/python" charts/tests/chart_test.py

# The soaks, ignored by `make test`: 20 leader kills that may lose nothing acknowledged, and
# 40 leader kills each of which a Seata raft-mode client must get over within 2 s.
# Built as `make test` builds (the whole workspace, so the same features and no second RocksDB
# build; the tests need the txmesh binary that build makes).
soak: deps
	$(CARGO) test --workspace --no-run
	$(CARGO) test --workspace --test coordinator_soak -- --ignored --nocapture
	$(CARGO) test --workspace --test seata_client_failover -- --ignored --nocapture

lint: deps fmt-check clippy

fmt-check:
	$(CARGO) fmt --all --check -- --color=$(RUSTFMT_COLOR)

clippy: deps
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build: deps
	$(CARGO) build --workspace

# The one container image (Dockerfile): coordinator, sidecar and operator. Needs a Docker engine.
IMAGE ?= txmesh/txmesh:$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
image:
	docker build -t $(IMAGE) .

bench:
	$(CARGO) bench -p txmesh-seata --bench codec

clean:
	$(CARGO) clean
	rm -rf fuzz/target

# ---------------------------------------------------------------------------------------------
# Fuzzing (cargo-fuzz, libFuzzer). fuzz/ is its own workspace with its own target directory.
# Crashes land in fuzz/artifacts/$(FUZZ_TARGET)/; reproduce one with
#   cargo +nightly fuzz run $(FUZZ_TARGET) fuzz/artifacts/$(FUZZ_TARGET)/crash-…

fuzz-corpus:
	fuzz/seed-corpus.sh $(FUZZ_CORPUS)

fuzz: fuzz-corpus
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	$(CARGO) $(FUZZ_TOOLCHAIN) fuzz run $(FUZZ_TARGET) $(FUZZ_CORPUS) -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1
