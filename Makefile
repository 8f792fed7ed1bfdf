# ferry — build, test and demo targets. Everything runs as root on Debian 12.
SHELL := /bin/bash
CARGO ?= cargo
N ?= 7

.PHONY: all build release deps test e2e lint fmt static demo bench rig-up rig-down clean fuzz

all: build

deps:            ## apt and pip packages the tests, demo and benchmarks use
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$(grep -v '^#' .ci/packages.txt)
	# --break-system-packages only where python3 is Debian's own (PEP 668).
	python3 -m pip install --quiet -r .ci/requirements.txt || \
	    python3 -m pip install --quiet --break-system-packages -r .ci/requirements.txt

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --bin ferry

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

test:            ## unit, integration and end-to-end tests (needs root and the deps), two targets at a time
	CARGO=$(CARGO) tests/run-lanes.sh

fuzz:            ## every fuzz target for FUZZ_SECONDS (default 60) each; fails on a crash
	fuzz/run.sh

e2e:
	$(CARGO) test --test '*' --no-fail-fast

demo: release    ## build a bundle from local fixtures, verify it, install it to local test hosts
	tests/demo.sh

bench: release   ## side-by-side benchmarks, writes bench/RESULTS.md
	bench/run.sh

rig-up: release
	tests/rig/rig.sh up $(N)

rig-down:
	tests/rig/rig.sh down

clean:
	$(CARGO) clean
