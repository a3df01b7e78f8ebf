# One-word entry points. `make demo` and `make test` install what they need (Debian, as root).
SHELL := /bin/bash
CARGO ?= cargo
APT_PACKAGES := curl python3 python3-pip libpcap-dev tcpdump nginx-light wrk nghttp2-client nghttp2-server postgresql chromium chromium-driver prometheus
PIP_PACKAGES := grpcio h2 grpcio-tools websockets requests prometheus-client openapi-spec-validator 'mitmproxy>=11,<12' selenium opentelemetry-proto

.PHONY: demo test bench setup setup-apt setup-pip setup-tshark man fmt lint corpus bench-import fuzz

demo: setup-apt
	$(CARGO) build --quiet
	bash replay-tests/demo.sh target/debug/mf

test: setup
	$(CARGO) build --quiet --all-targets
	$(CARGO) test --all-targets -- --test-threads=4

bench: setup
	$(CARGO) build --release --quiet --bin mf --example bare_hyper --example bare_h2
	bash benches/run.sh target/release/mf

setup: setup-apt setup-pip

# apt only when something is missing, so a warm machine starts in a second.
setup-apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# mitmproxy is pinned: unpinned, pip's resolver backtracks to releases whose old cryptography
# builds from source and fails on today's setuptools (no pkg_resources).
setup-pip:
	@python3 -c "import grpc, grpc_tools, websockets, requests, prometheus_client, openapi_spec_validator, mitmproxy, selenium, opentelemetry.proto" 2>/dev/null || \
	  python3 -m pip install --quiet --disable-pip-version-check --prefer-binary $(PIP_PACKAGES) 2>/dev/null || \
	  python3 -m pip install --quiet --disable-pip-version-check --prefer-binary --break-system-packages $(PIP_PACKAGES)

man:
	$(CARGO) run --quiet -- generate man man

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) clippy --all-targets -- -D warnings

# Real-world captures in a folder with a README.md table of expected counts (not part of
# the test suite): make corpus CAPTURES=DIR
corpus:
	bash replay-tests/corpus.sh "$(CAPTURES)"

# Import throughput on a generated capture (mixed HTTP/1.1 and gRPC), then mf against
# tshark on the same lossy HTTP/1.1 capture: requests paired, speed, peak RSS.
bench-import: setup setup-tshark
	$(CARGO) build --release --quiet --bin mf
	bash benches/import.sh target/release/mf

# tshark without the question wireshark-common asks (non-root capture: no).
setup-tshark:
	@command -v tshark >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | $$SUDO debconf-set-selections; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq tshark >/dev/null; }

# Each fuzz target for FUZZ_SECONDS (cargo-fuzz, nightly toolchain).
FUZZ_SECONDS ?= 60
fuzz:
	cd fuzz && for t in h1 h2 tcp ws grpc pcap; do cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done
