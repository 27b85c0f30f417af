# reconciled: build, test, install.
GO      ?= go
BIN     ?= bin/reconciled
PREFIX  ?= /usr/local

# One static binary: no cgo (net and os/user would otherwise link libc
# dynamically), which also starts faster, and the container init and monitor
# stages are this same binary.
export CGO_ENABLED = 0

.PHONY: build test deps vet run check-gen

# build builds $(BIN) as shipped, with packaging/build.sh: one static binary
# with the container stages' own smaller binary appended (they start in
# about half the time), written with write(2) and renamed into place by
# install(1) (a binary fresh from the linker sits in the page cache in
# 4 KiB pages and every start of it costs more; install(1) also replaces
# $(BIN) by a new file rather than writing into a binary that may be
# running). `go build ./cmd/reconciled` gives a binary that works the same
# and runs its container stages from itself.
#
# The git revision (and whether the tree was modified) is recorded for
# `reconciled version` whatever GOFLAGS says (-buildvcs=auto), nothing
# outside a checkout; VERSION=1.4.0 sets the version it prints.
VERSION ?=
build:
	@mkdir -p $(dir $(BIN))
	GO=$(GO) packaging/build.sh $(BIN) $(VERSION)

# deps installs the Debian packages the tests use (busybox-static for the test
# rootfs and test images, runc and crun for side-by-side benchmarks,
# docker-registry for a real local registry, skopeo for image archives made
# by another tool, binutils to check the waiter's machine code against its
# assembly, podman to run reconciled-runc under a real engine), only when
# missing.
deps:
	@missing=""; for p in busybox-static runc crun docker-registry skopeo binutils podman; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

vet:
	$(GO) vet ./...

# check-gen fails when executor/waiter/zcode_amd64.go is not what gen.sh
# assembles from its sources (TestGeneratedCode checks the same in `make
# test`).
check-gen:
	@t=$$(mktemp -d) && trap 'rm -rf "$$t"' EXIT && \
	sh executor/waiter/gen.sh "$$t/zcode_amd64.go" && \
	cmp executor/waiter/zcode_amd64.go "$$t/zcode_amd64.go" || \
	{ echo "executor/waiter/zcode_amd64.go is stale: run executor/waiter/gen.sh"; exit 1; }

# test runs every test, the ones that need root included. Under
# RECONCILED_REQUIRE_ROOT=1 (set here) a test that cannot run fails.
test: deps vet
	RECONCILED_REQUIRE_ROOT=1 $(GO) test -count=1 -timeout 20m ./...

# run starts the daemon on the shipped examples, in the foreground. The
# image one (examples/manifests/from-image.yaml) runs example.local/busybox:1,
# built here from busybox-static and imported into the image store when
# missing: no network.
EXAMPLE_IMAGE ?= example.local/busybox:1
run: build example-image
	$(BIN) run --manifests examples/manifests

.PHONY: example-image
example-image: build
	@if ! $(BIN) image inspect $(EXAMPLE_IMAGE) >/dev/null 2>&1; then \
		d=$$(mktemp -d) && examples/images/busybox-image.sh $$d/oci >/dev/null && \
		$(BIN) image import --name $(EXAMPLE_IMAGE) $$d/oci; s=$$?; rm -rf --one-file-system $$d; exit $$s; fi

# install puts the binary at $(DESTDIR)$(PREFIX)/bin/reconciled, the systemd
# unit at $(DESTDIR)$(UNITDIR)/reconciled.service and an empty
# $(DESTDIR)/etc/reconciled.d (0755, root), through `reconciled install`.
UNITDIR ?= /etc/systemd/system
.PHONY: install
install: build
	$(BIN) install --root "$(or $(DESTDIR),/)" --prefix "$(PREFIX)" --unit-dir "$(UNITDIR)"
