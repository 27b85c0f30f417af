// Command runtimebench times `reconciled runtime`, runc and crun side by side
// on the same busybox bundle: create, start, kill, delete and a whole `run`
// of /bin/true, median and p95 over N containers each, the peak RSS of each
// CLI, and the memory held per created-not-started container.
//
// It is run by bench/runtime.sh, which installs what it needs. The runtimes
// take turns container by container, so drift on the machine hits all alike.
package main
