// Package daemontest reaches a running reconciled daemon as its user
// does, through the binary: `reconciled status -o json` decoded into the
// daemon's own report types (internal/daemon), and waits on what it says.
// It serves the end-to-end tests (test/e2e, test/systemd_e2e).
//
// It must not be imported by non-test code. It is apart from testutil
// because it imports internal/daemon: the in-package tests of the
// packages the daemon is built from (desired, executor, ...) import
// testutil, and would then import themselves.
package daemontest
