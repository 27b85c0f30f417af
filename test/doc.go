// Package test holds the runtime's integration tests: `reconciled runtime`
// and the executor package driven as a user would, on busybox root
// filesystems the tests build, against the real kernel (namespaces, mounts,
// cgroups, capabilities, hooks, exec, pause, events). Every container a
// test creates is deleted in t.Cleanup and named after the test.
//
// It holds tests only; it must not be imported.
package test
