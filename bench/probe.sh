#!/usr/bin/env bash
# What spec.health's probes cost the daemon (issue 17): N containers (busybox
# httpd in its own network namespace) probed every interval by one kind of
# probe at a time (none, http, tcp, exec); the daemon's CPU per probe and
# as a share of one core. Run as root from the repository:
#   sudo bench/probe.sh [-n 100] [-interval 10s] [-window 60s] [-kinds none,http,tcp,exec] [-rivals runc,crun]
# Beside ours, the CPU of `runc exec` and `crun exec` of the exec probe's
# command: what docker's HEALTHCHECK and kubelet's exec probes run.
# Everything it creates lives under one temporary directory and is removed.
set -euo pipefail
export CGO_ENABLED=0
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/probebench.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
packaging/build.sh "$work/reconciled" # as shipped (see the Makefile)
go build -o "$work/probebench" ./bench/probebench
shim=""
# crun 1.8 refuses the cgroup v1 hybrid layout; the shim hides the empty
# cgroup2 mount from it (see ../shared/bench-aids/README.md).
if grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/self/mounts; then
  gcc -shared -fPIC -O2 -o "$work/nohybrid.so" bench/nohybrid.c -ldl
  shim="$work/nohybrid.so"
fi
"$work/probebench" -reconciled "$work/reconciled" -work "$work" -nohybrid "$shim" "$@"
