// Package e2e runs `reconciled run` as a person would, against the real
// kernel: manifests dropped into a directory, the daemon's view read with
// `reconciled status -o json`, the kernel's with /proc and the cgroup
// filesystem. Every test starts its own daemon with its own manifests,
// state and log directories, and leaves nothing behind.
//
// It holds tests only; it must not be imported.
package e2e
