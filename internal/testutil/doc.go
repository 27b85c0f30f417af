// Package testutil holds helpers shared by the tests that run against the
// real kernel: the root requirement and a busybox root filesystem.
//
// It must not be imported by non-test code.
package testutil
