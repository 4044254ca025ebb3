# pelagos: two commands do everything on a fresh Debian/Ubuntu machine (as root):
#   sudo make run    install build deps, build, load the test images, run a container
#   sudo make test   install deps, then fmt + clippy + unit tests + root integration tests

SHELL := /bin/bash
CARGO ?= cargo
FIXTURES ?= $(CURDIR)/integration/fixtures/out
APT_PACKAGES := libseccomp-dev pkg-config busybox-static debootstrap python3 util-linux procps docker-registry skopeo apache2-utils openssl curl hyperfine nftables iproute2

.PHONY: deps build release fixtures run test test-unit test-root lint bench clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(CARGO) build --release

fixtures: deps
	bash integration/fixtures/build-images.sh $(FIXTURES)

run: build fixtures
	install -m 0755 target/release/pelagos /usr/local/bin/pelagos
	pelagos load -i $(FIXTURES)/busybox.tar
	pelagos run --rm busybox echo "pelagos is working"

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-unit: deps
	$(CARGO) test --workspace --lib --bins

REGISTRY ?= 127.0.0.1:5055

test-root: deps fixtures
	PELAGOS_TEST_REGISTRY=$(REGISTRY) bash integration/registry.sh start
	fwd=$$(cat /proc/sys/net/ipv4/ip_forward); \
	PELAGOS_TEST_REGISTRY=$(REGISTRY) PELAGOS_FIXTURES=$(FIXTURES) $(CARGO) test --workspace --test '*' -- --test-threads=2; \
	rc=$$?; PELAGOS_TEST_REGISTRY=$(REGISTRY) bash integration/registry.sh stop; \
	if [ "$$(cat /proc/sys/net/ipv4/ip_forward)" != "$$fwd" ]; then \
		echo "the tests changed net.ipv4.ip_forward (was $$fwd): every test daemon.json must say ip-forward false"; \
		echo "$$fwd" > /proc/sys/net/ipv4/ip_forward; rc=1; fi; \
	exit $$rc

test: lint test-unit test-root

bench: build fixtures
	bash benches/run.sh

clean:
	$(CARGO) clean
	rm -rf $(FIXTURES)
