#!/usr/bin/env bash
# Runs, on a machine without Go (the lent "device" machine: a pure cgroup v2
# host), what bench/device/prepare.sh built into DIR/kit.tar.gz (DIR from
# $DEVKIT, default .devkit): run as root from the repository, the working
# tree and DIR carried there:
#   bench/device/run.sh [STEP...]
# STEP is converge, runtime or tests (default: all three, in that order):
#
#   converge  bench/converge.sh's benchmark (convergebench), with
#             $CONVERGE_ARGS after its defaults;
#   runtime   bench/runtime.sh's (runtimebench), with $RUNTIME_ARGS;
#   tests     the test binaries, each from its package's directory, with
#             RECONCILED_BIN set to the shipped binary; $TEST_RUN, when set,
#             is their -test.run.
#
# Each step is bounded (CONVERGE_LIMIT, RUNTIME_LIMIT, TESTS_LIMIT, in
# seconds: 330, 150 and 540 by default: the first two together, and the
# tests alone, fit in the device tool's 10 minutes a command) and its output goes to the terminal and to $OUT/STEP.txt ($OUT:
# the device tool's folder that comes back; ./devkit-out elsewhere), the
# host's description to $OUT/host.txt. The tests need /bin/busybox: where
# the machine has none the kit's is copied there (and said so). Everything
# else it makes lives in one directory under /var/tmp and is removed; the
# exit status is the first failed step's.
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

# _tests (the tests step, run by this script under its time limit): each
# test binary of the kit at $DEVKIT_KIT from its package's directory: the
# results and log lines (at most 200 a package), then the counts and the
# reasons for skips.
if [ "${1:-}" = _tests ]; then
  k=$DEVKIT_KIT
  rc=0
  for t in "$k"/*.test; do
    p=$(basename "$t" .test | tr _ /)
    log=$DEVKIT_WORK/$(basename "$t").log
    echo "-- $p"
    t0=$SECONDS
    (cd "$repo/$p" && RECONCILED_BIN=$k/reconciled "$t" -test.v -test.count=1 \
      ${TEST_RUN:+-test.run "$TEST_RUN"}) >"$log" 2>&1 || rc=1
    grep -E -e '^(--- FAIL|FAIL|ok|PASS|panic)' -e '^\s+\S+_test\.go:[0-9]+:' "$log" | head -200
    echo "   in $((SECONDS - t0)) s: $(grep -c -- '--- PASS' "$log") passed, $(grep -c -- '--- FAIL' "$log") failed, $(grep -c -- '--- SKIP' "$log") skipped:"
    grep -A1 -- '--- SKIP' "$log" | grep -v -e '^--$' -e '--- SKIP' | sort | uniq -c | head -20
  done
  exit $rc
fi
dir=${DEVKIT:-.devkit}
out=${OUT:-$repo/devkit-out}
mkdir -p "$out"
[ $# -gt 0 ] || set -- converge runtime tests
work=$(mktemp -d /var/tmp/devkit.XXXXXX) || exit 1
trap 'rm -rf --one-file-system "$work"' EXIT
tar -C "$work" -xzf "$dir/kit.tar.gz" || exit 1
k=$work/kit
export PATH=$k/bin:$PATH LD_LIBRARY_PATH=$k/lib
{
  echo "kit: revision $(cat "$k/revision")$([ -s "$k/dirty" ] && echo ' (modified)')"
  uname -a
  echo "CPUs: $(nproc)"
  echo "cmdline: $(cat /proc/cmdline)"
  grep cgroup /proc/self/mountinfo
  echo "PID 1: $(cat /proc/1/comm)"
  runc --version | head -1
  crun --version | head -1
} 2>&1 | tee "$out/host.txt"

status=0
step() { # step NAME LIMIT CMD...: runs CMD bounded by LIMIT seconds
  local name=$1 limit=$2 rc
  shift 2
  echo "== $name (at most ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc"
  [ "$rc" -eq 0 ] || [ "$status" -ne 0 ] || status=$rc
}

for s in "$@"; do
  case $s in
  converge)
    mkdir -p "$work/converge"
    # shellcheck disable=SC2086 # the arguments are words
    step converge "${CONVERGE_LIMIT:-330}" "$k/convergebench" -reconciled "$k/reconciled" \
      -busybox "$k/busybox" -work "$work/converge" ${CONVERGE_ARGS:-}
    ;;
  runtime)
    mkdir -p "$work/runtime"
    # shellcheck disable=SC2086
    step runtime "${RUNTIME_LIMIT:-150}" "$k/runtimebench" -reconciled "$k/reconciled" \
      -busybox "$k/busybox" -peakrss "$k/peakrss" -work "$work/runtime" ${RUNTIME_ARGS:-}
    ;;
  tests)
    if [ ! -e /bin/busybox ]; then
      echo "no /bin/busybox here: the kit's copied there (the tests build their root filesystems from it)"
      cp "$k/busybox" /bin/busybox
    fi
    export DEVKIT_KIT=$k DEVKIT_WORK=$work
    step tests "${TESTS_LIMIT:-540}" "$repo/bench/device/run.sh" _tests
    ;;
  *)
    echo "unknown step $s: converge, runtime or tests" >&2
    exit 2
    ;;
  esac
done
exit "$status"
