# Inclavare Containers in Rust. `make demo` and `make test` work on a fresh Debian 12
# machine as root: each installs what it needs first.

CARGO      ?= cargo
RELEASE    := target/release
RUNE       := $(RELEASE)/rune
IMAGES     := target/images
APT_STAMP  := target/.apt-deps
# The boot program of confidential-image enclaves: statically linked (the workspace's
# rustc wrapper, scripts/rustc-workspace-wrapper.sh, links it so).
BOOT       := $(RELEASE)/enclave-boot
# Debian 12's kubectl (kubernetes-client 1.20, kustomize 2.0): deploy/ must render with the
# oldest kubectl an operator here has. Unpacked, not installed: a kubectl from another
# package may own /usr/bin/kubectl.
KUBECTL    := target/tools/kubernetes-client/usr/bin/kubectl

# Build: libseccomp for enforced seccomp profiles; protoc for the CRI client the shim's
# tests build (k8s-cri). Tests and demo: the real clients; postgresql for verdictd's
# postgres backend (tests start private servers of their own; the package's cluster is
# not used); wabt's wat2wasm builds the WebAssembly test modules of liberpal-wasm, and
# clang with wasi-libc (clang-14 … libclang-rt-14-dev-wasm32) the README's C example (jq:
# the README's wasm walkthrough, which a test runs); GNU
# time measures `make bench`'s peak memory; containernetworking-plugins (only suggested
# by containerd) gives the CRI tests' pod network its bridge.
BUILD_DEPS := build-essential pkg-config libseccomp-dev protobuf-compiler
TEST_DEPS  := containerd containernetworking-plugins docker.io podman runc umoci busybox-static hyperfine iproute2 procps openssl skopeo docker-registry gnupg zstd curl python3 postgresql wabt time \
	clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 jq

.PHONY: all build deps test demo bench fmt lint lint-layout install image clean

all: build

# Rechecked when this file changes (a package added here is installed on the next run).
$(APT_STAMP): Makefile
	@missing=$$(for p in $(BUILD_DEPS) $(TEST_DEPS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@mkdir -p target && touch $@

deps: $(APT_STAMP)

build: deps
	@# Examples too (the RA-TLS server the demo runs in an enclave, the benches): in
	@# one workspace build they share its dependencies; built per package, they would
	@# not (other feature sets).
	$(CARGO) build --release --workspace --lib --bins --examples
	@# The PAL's conventional file name has a dash, which a cdylib's name cannot.
	cp -f $(RELEASE)/liberpal_sim.so $(RELEASE)/liberpal-sim.so
	cp -f $(RELEASE)/liberpal_wasm.so $(RELEASE)/liberpal-wasm.so
	@# enclave-boot runs first in an empty root (the image is not there yet): static.
	@test -f $(BOOT) && ! readelf -l $(BOOT) | grep -q INTERP || { echo "make: $(BOOT) is missing or dynamically linked (see scripts/rustc-workspace-wrapper.sh)"; exit 1; }

$(IMAGES)/busybox-oci.tar: deps
	scripts/busybox-image.sh $(IMAGES)

# Unit and integration tests, in the release profile so the build is shared with `make
# demo`. Integration tests start private containerd, dockerd and podman instances.
# Lint's cheap half runs here (layout rows, rustfmt); clippy, which re-checks every
# dependency (~7 min on 2 cores), is `make lint`, run before each commit.
test: build lint-layout $(IMAGES)/busybox-oci.tar $(KUBECTL)
	$(CARGO) test --release --workspace -- --test-threads 2
	@# verdictd's protocol tests again on its postgres backend (a private server each).
	@# --workspace keeps the feature set, so nothing is rebuilt.
	@# (verdictd's tests are one program, `broker`: these are its modules.)
	VERDICTD_TEST_STORAGE=postgres $(CARGO) test --release --workspace --test broker -- \
		protocol:: rvps:: interop:: bounds:: load:: sim_measurements:: image_event:: dry_run:: \
		--test-threads 2

$(KUBECTL): $(APT_STAMP)
	rm -rf target/tools/kubernetes-client target/tools/kubernetes-client_*.deb
	mkdir -p target/tools
	cd target/tools && { apt-get download -qq kubernetes-client 2>/dev/null || \
		{ apt-get update -qq && apt-get download -qq kubernetes-client 2>/dev/null; } || \
		{ echo "make: could not download Debian's kubernetes-client (apt-get download)" >&2; exit 1; }; }
	dpkg-deb -x target/tools/kubernetes-client_*.deb target/tools/kubernetes-client
	@test -x $@ && touch $@

lint-layout:
	@# docs/architecture.md and the README's layout name every crate.
	@for c in crates/*/; do c=$$(basename $$c); \
		grep -q "^| \`$$c\`" docs/architecture.md || { echo "docs/architecture.md: no row for crates/$$c"; exit 1; }; \
		grep -q "^| \`crates/$$c\`" README.md || { echo "README.md layout: no row for crates/$$c"; exit 1; }; done
	$(CARGO) fmt --all -- --check

lint: deps lint-layout
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

demo: build $(IMAGES)/busybox-oci.tar
	scripts/demo.sh

bench: build $(IMAGES)/busybox-oci.tar
	scripts/bench.sh

PREFIX ?= /usr/local
BOOT_SIGNER ?= $(DESTDIR)/etc/inclavare/boot-signer.key
install: build
	install -D -m 0755 $(RUNE) $(DESTDIR)$(PREFIX)/bin/rune
	install -D -m 0755 $(RELEASE)/sim-sign $(DESTDIR)$(PREFIX)/bin/sim-sign
	install -D -m 0755 $(RELEASE)/containerd-shim-rune-v2 $(DESTDIR)$(PREFIX)/bin/containerd-shim-rune-v2
	install -D -m 0755 $(RELEASE)/signature-server $(DESTDIR)$(PREFIX)/bin/signature-server
	install -D -m 0755 $(RELEASE)/inclavared $(DESTDIR)$(PREFIX)/bin/inclavared
	install -D -m 0755 $(RELEASE)/shelter $(DESTDIR)$(PREFIX)/bin/shelter
	install -D -m 0755 $(RELEASE)/verdictd $(DESTDIR)$(PREFIX)/bin/verdictd
	install -D -m 0755 $(RELEASE)/attestation-agent $(DESTDIR)$(PREFIX)/bin/attestation-agent
	install -D -m 0755 $(RELEASE)/enclave-image $(DESTDIR)$(PREFIX)/bin/enclave-image
	install -D -m 0755 $(RELEASE)/liberpal-sim.so $(DESTDIR)$(PREFIX)/lib/rune/liberpal-sim.so
	install -D -m 0755 $(RELEASE)/liberpal-wasm.so $(DESTDIR)$(PREFIX)/lib/rune/liberpal-wasm.so
	@# The confidential-image boot program goes beside the PAL, with a manifest signed by
	@# this host's boot signer key (made once, 0600). Tenants admit its mr_enclave (printed
	@# here), which depends on the program only, not on who signed.
	install -D -m 0755 $(BOOT) $(DESTDIR)$(PREFIX)/lib/rune/enclave-boot
	@test -f $(BOOT_SIGNER) || (umask 077 && mkdir -p $(dir $(BOOT_SIGNER)) && $(RELEASE)/sim-sign keygen --out $(BOOT_SIGNER) >/dev/null)
	$(RELEASE)/sim-sign sign --executable $(DESTDIR)$(PREFIX)/lib/rune/enclave-boot --entrypoint /.rune/enclave-boot \
		--key $(BOOT_SIGNER) --out $(DESTDIR)$(PREFIX)/lib/rune/enclave-boot.manifest.json

# The cluster's image (deploy/Containerfile): the node installer and verdictd. Push it
# where the nodes pull from and set its name in deploy/*/kustomization.yaml.
IMAGE ?= localhost/inclavare/inclavare-containers:latest
IMAGE_CTX := target/image-context
image: build
	rm -rf $(IMAGE_CTX)
	$(MAKE) install DESTDIR=$(CURDIR)/$(IMAGE_CTX) PREFIX=/usr/local BOOT_SIGNER=$(BOOT_SIGNER)
	podman build -t $(IMAGE) -f deploy/Containerfile $(IMAGE_CTX)/usr/local

clean:
	$(CARGO) clean
