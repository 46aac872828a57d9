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
.PHONY: help deps deps-libclang deps-python demo test soak lint fmt-check clippy build bench fuzz fuzz-corpus clean

help:
	@echo 'make demo    deps, then build in release mode and run txmesh demo (DEMO_ARGS=...)'
	@echo 'make deps    install what the build and tests need (libclang, a Python venv), if missing'
	@echo 'make test    deps, then cargo fmt --check, clippy -D warnings, cargo test'
	@echo 'make soak    kill -9 the leader of a 3-node coordinator group 20 times under load'
	@echo 'make lint    cargo fmt --check and clippy -D warnings'
	@echo 'make build   cargo build --workspace'
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

# The Python environment with kubernetes-validate, which txmesh-operator's golden tests run to
# check every object the operator builds against the Kubernetes schemas. The tests find it
# through TXMESH_VENV (without it they skip that check). Created once, then reused.
TXMESH_VENV ?= $(CURDIR)/.venv
export TXMESH_VENV
KUBERNETES_VALIDATE_VERSION := 1.37.0

deps-python:
	@if [ "$$("$(TXMESH_VENV)/bin/kubernetes-validate" --version 2>/dev/null)" = "$(KUBERNETES_VALIDATE_VERSION)" ]; then \
	    echo "deps: kubernetes-validate $(KUBERNETES_VALIDATE_VERSION) found in $(TXMESH_VENV)"; \
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
	echo "deps: installing kubernetes-validate $(KUBERNETES_VALIDATE_VERSION) into $(TXMESH_VENV)"; \
	python3 -m venv "$(TXMESH_VENV)" && \
	"$(TXMESH_VENV)/bin/pip" install --quiet --disable-pip-version-check \
	    "kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION)"

# ---------------------------------------------------------------------------------------------
# Build, check, test.

# The README's first command: transfers on a local coordinator group with a leader kill.
# `make demo DEMO_ARGS='--transfers 10000 --keep'`; `txmesh demo --help` lists the options.
DEMO_ARGS ?=
demo: deps
	$(CARGO) run --release -p txmesh -- demo $(DEMO_ARGS)

test: deps lint
	$(CARGO) test --workspace

# The 20-kill soak (issue 4), ignored by `make test`: nothing acknowledged may be lost.
soak: deps
	$(CARGO) build -p txmesh
	$(CARGO) test -p txmesh-e2e --test coordinator_soak -- --ignored --nocapture

lint: deps fmt-check clippy

fmt-check:
	$(CARGO) fmt --all --check -- --color=$(RUSTFMT_COLOR)

clippy: deps
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build: deps
	$(CARGO) build --workspace

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
