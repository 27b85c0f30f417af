#!/usr/bin/env bash
# Side-by-side benchmark of `reconciled runtime`, runc and crun on the same
# busybox bundle: create, start, kill, delete and `run /bin/true`, median and
# p95 over N containers each (default 100), peak RSS of each CLI, and memory
# held per created-not-started container. Run as root from the repository:
#   sudo bench/runtime.sh [-n 100]
set -euo pipefail
# A static binary, as shipped (see the Makefile).
export CGO_ENABLED=0
cd "$(dirname "$0")/.."
missing=""
for p in busybox-static runc crun gcc; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
work=$(mktemp -d /tmp/runtimebench.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
# As make build and a package build it (packaging/build.sh): the container
# stages' own binary appended, the file written with write(2).
packaging/build.sh "$work/reconciled"
shim=""
# crun 1.8 refuses the cgroup v1 hybrid layout; the shim hides the empty
# cgroup2 mount from it (see ../shared/bench-aids/README.md).
if grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/self/mounts; then
  gcc -shared -fPIC -O2 -o "$work/nohybrid.so" bench/nohybrid.c -ldl
  shim="$work/nohybrid.so"
fi
gcc -O2 -o "$work/peakrss" bench/peakrss.c
# Built the same way: in-process, as in the daemon, the stages run from
# the binary appended to its own.
PKG=./bench/runtimebench packaging/build.sh "$work/runtimebench"
"$work/runtimebench" -reconciled "$work/reconciled" -nohybrid "$shim" -peakrss "$work/peakrss" -work "$work" "$@"
