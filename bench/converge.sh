#!/usr/bin/env bash
# End-to-end benchmark of the daemon (`reconciled run`): drop-to-running
# latency (p50, p99), time to converge N containers from empty and to
# remove them, the idle daemon's CPU and RSS with N running, adoption of N
# after a restart; beside it, the same N created and started one after the
# other with runc and with crun. Run as root from the repository:
#   sudo bench/converge.sh [-n 1000] [-drops 200] [-drops-loaded 50] [-drop-gap 0] [-idle 30s] [-parallel 4] [-runtimes runc,crun]
# A quick run: bench/converge.sh -n 200 -drops 50 -idle 10s
# An A/B of the drop to running against an earlier build (built with
# packaging/build.sh from a worktree), alternating, in the same run:
#   sudo bench/converge.sh -base /path/to/old/reconciled -pairs 8 -drops 150
# Everything it creates lives under one temporary directory and is removed.
# The daemon runs with --cgroup-driver auto (-cgroup-driver to choose):
# cgroupfs where PID 1 is not systemd.
#
# -systemd runs the same benchmark with the systemd cgroup driver (what auto
# picks where systemd is PID 1) inside a sandboxed systemd (test/systemdtest):
# BenchmarkConvergeSystemd in test/systemd_e2e, the other arguments passed to
# convergebench after its defaults (-n 200 -drops 100 -drops-loaded 50
# -idle 10s -runtimes none) and after $RECONCILED_CONVERGEBENCH_ARGS:
#   sudo bench/converge.sh -systemd [-n 1000] [-idle 30s]
set -euo pipefail
# A static binary, as shipped (see the Makefile).
export CGO_ENABLED=0
cd "$(dirname "$0")/.."
systemd=""
args=()
for a in "$@"; do
  case $a in
  -systemd | --systemd) systemd=1 ;;
  *) args+=("$a") ;;
  esac
done
set -- ${args[@]+"${args[@]}"}
missing=""
if [ -n "$systemd" ]; then
  for p in busybox-static systemd; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
  RECONCILED_REQUIRE_ROOT=1 RECONCILED_CONVERGEBENCH_ARGS="${RECONCILED_CONVERGEBENCH_ARGS:-} $*" exec go test -count=1 -run '^$' \
    -bench '^BenchmarkConvergeSystemd$' -benchtime 1x -timeout 60m ./test/systemd_e2e/
fi
for p in busybox-static runc crun gcc; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
work=$(mktemp -d /tmp/convergebench.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
# As make build and a package build it (packaging/build.sh): the container
# stages' own binary appended, the file written with write(2).
packaging/build.sh "$work/reconciled"
go build -o "$work/convergebench" ./bench/convergebench
shim=""
# crun 1.8 refuses the cgroup v1 hybrid layout; the shim hides the empty
# cgroup2 mount from it (as bench/runtime.sh does).
if grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/self/mounts; then
  gcc -shared -fPIC -O2 -o "$work/nohybrid.so" bench/nohybrid.c -ldl
  shim="$work/nohybrid.so"
fi
"$work/convergebench" -reconciled "$work/reconciled" -nohybrid "$shim" -work "$work" "$@"
