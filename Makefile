# cce4long: the README's commands. `make help` lists the targets.
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)
# The workplace's shared/ (test data, evm-devnet), also from a clone made elsewhere.
CCE4_SHARED ?= $(shell scripts/shared-dir.sh)
export CCE4_SHARED

.PHONY: help setup build install demo test contracts bench-segments bench bench-s3 bench-plane clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: ## Install what is missing: Debian packages, the Python venv
	@scripts/setup.sh

build: setup ## Build everything in release mode
	swift build -c release

install: build ## Install cce4 and cce4fs into /usr/local/bin (mount -t fuse.cce4fs finds the helper there)
	install -m 0755 .build/release/cce4 .build/release/cce4fs /usr/local/bin/

demo: build ## Pack, verify and read back a synthetic longevity dataset, end to end
	CCE4=.build/release/cce4 scripts/demo.sh

test: setup ## Build and run every test (as root: some tests mount tmpfs)
	swift build --build-tests
	swift test --skip-build

contracts: setup ## Compile contracts/*.vy into contracts/build and Sources/Ledger/EVMContracts.swift (commit them)
	.venv/bin/python scripts/compile_contracts.py

bench-segments: setup ## Measure ciphertext segment sizes (docs/format.md §2.4)
	swift build -c release --product cce4-bench
	.build/release/cce4-bench segments --runs 5

bench-plane: setup ## Load the Privacy Plane: 200 sign-in + status clients for 30 s (docs/performance.md)
	scripts/plane-load.sh 200 30 release

clean: ## Remove build outputs and the demo's work folder
	rm -rf .build demo/work

bench: build ## Benchmark cce4fs vs gocryptfs, passthrough_ll, plain (root; ~10 min; BENCH_ARGS=--quick)
	@CCE4_SETUP_BENCH=1 scripts/setup.sh
	.venv/bin/python scripts/bench/bench.py $(BENCH_ARGS)

bench-s3: build ## Benchmark cce4fs over s3:// vs s3fs and rclone on a local moto server (root; ~25 min; BENCH_ARGS=--quick)
	@CCE4_SETUP_BENCH=1 scripts/setup.sh
	.venv/bin/python scripts/bench/s3bench.py $(BENCH_ARGS)
