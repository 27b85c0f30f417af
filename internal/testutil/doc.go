// Package testutil holds helpers shared by the tests that run against the
// real kernel: the root requirement, a busybox root filesystem, manifests
// written as deployment tools write them, and a look at processes. What
// reaches a running daemon is in its subpackage daemontest.
//
// It must not be imported by non-test code.
package testutil
