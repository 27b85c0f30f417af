# reconciled: build, test, install.
GO      ?= go
BIN     ?= bin/reconciled
PREFIX  ?= /usr/local

# One static binary: no cgo (net and os/user would otherwise link libc
# dynamically), which also starts faster, and the container init and monitor
# stages are this same binary.
export CGO_ENABLED = 0

.PHONY: build test deps vet run

build:
	$(GO) build -o $(BIN) ./cmd/reconciled

# deps installs the Debian packages the tests use (busybox-static for the test
# rootfs, runc and crun for side-by-side benchmarks), only when missing.
deps:
	@missing=""; for p in busybox-static runc crun; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

vet:
	$(GO) vet ./...

# test runs every test, the ones that need root included. Under
# RECONCILED_REQUIRE_ROOT=1 (set here) a test that cannot run fails.
test: deps vet
	RECONCILED_REQUIRE_ROOT=1 $(GO) test -count=1 -timeout 20m ./...

# run starts the daemon on the shipped examples, in the foreground.
run: build
	$(BIN) run --manifests examples/manifests

# install puts the binary at $(DESTDIR)$(PREFIX)/bin/reconciled, the systemd
# unit at $(DESTDIR)$(UNITDIR)/reconciled.service and an empty
# $(DESTDIR)/etc/reconciled.d (0755, root), through `reconciled install`.
UNITDIR ?= /etc/systemd/system
.PHONY: install
install: build
	$(BIN) install --root "$(or $(DESTDIR),/)" --prefix "$(PREFIX)" --unit-dir "$(UNITDIR)"
