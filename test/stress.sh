#!/usr/bin/env bash
# test/stress.sh: `make test` N times in a row (default 10) with both cores
# busy beside it (stress-ng --cpu 2, or a busy loop per core without it),
# as issue 14 asks: a test that fails under load is a race to find. Each
# run's log is kept in the log directory; a summary line per run says its
# exit status, wall time and failing tests. Run as root from the
# repository:
#   sudo test/stress.sh [-n 10] [-logs DIR] [-stop-on-failure]
# It stops the load it started (by PID) when it ends or is interrupted.
set -uo pipefail
cd "$(dirname "$0")/.."
n=10 logs="" stop=0
while [ $# -gt 0 ]; do
  case $1 in
    -n) n=$2; shift 2 ;;
    -logs) logs=$2; shift 2 ;;
    -stop-on-failure) stop=1; shift ;;
    *) echo "usage: $0 [-n 10] [-logs DIR] [-stop-on-failure]" >&2; exit 2 ;;
  esac
done
[ -n "$logs" ] || logs=$(mktemp -d /tmp/stress.XXXXXX)
mkdir -p "$logs"
load=()
cleanup() { [ ${#load[@]} -gt 0 ] && kill "${load[@]}" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM
cores=$(nproc)
if command -v stress-ng >/dev/null; then
  stress-ng --cpu "$cores" --quiet >/dev/null 2>&1 & load+=($!)
  what="stress-ng --cpu $cores"
else
  for _ in $(seq "$cores"); do (while :; do :; done) & load+=($!); done
  what="$cores busy loops"
fi
echo "$(uname -r), $cores CPUs, load: $what; logs in $logs" | tee "$logs/summary"
failed=0
for i in $(seq "$n"); do
  start=$(date +%s)
  make test >"$logs/run-$i.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  fails=$(grep -E '^\s*--- FAIL' "$logs/run-$i.log" | awk '{print $3}' | sort -u | tr '\n' ' ')
  echo "run $i/$n: exit $rc in ${secs}s${fails:+, failed: $fails}" | tee -a "$logs/summary"
  if [ $rc -ne 0 ]; then
    failed=$((failed + 1))
    [ $stop -eq 1 ] && break
  fi
done
echo "$failed of $n runs failed" | tee -a "$logs/summary"
[ $failed -eq 0 ]
