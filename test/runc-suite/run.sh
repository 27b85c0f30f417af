#!/bin/bash
# run.sh runs runc v1.1.5's own integration suite (tests/integration/*.bats)
# against runc, crun and reconciled (as `reconciled-runc`, a symlink to the
# binary), and prints a side-by-side table: passed/failed/skipped per file
# and runtime.
#
# Offline but for the Go module proxy and Debian apt:
#   - the suite comes from the module proxy's zip of
#     github.com/opencontainers/runc@v1.1.5 (the whole repository);
#   - recvtty (and seccompagent, for seccomp-notify.bats) are built from it;
#   - bats, gawk, jq, libseccomp-dev are Debian packages, installed if missing;
#   - the busybox image the suite would download (docker-library's glibc
#     busybox.tar.xz) is built here from /bin/busybox (busybox-static) with
#     the same layout: /bin with every applet, /etc/passwd and /etc/group
#     with root, daemon and nobody, and the usual empty directories.
# hooks.bats needs a Debian "buster" rootfs with gcc output and ldconfig,
# which cannot be built offline: it is left out (EXCLUDE below).
#
# Usage: test/runc-suite/run.sh [RUNTIME...]   (default: runc crun reconciled)
#   a RUNTIME is runc, crun, reconciled, or NAME=PATH (any runc-like binary)
#   RECONCILED_BIN  the reconciled binary (default: built from this tree)
#   WORK            work directory (default /var/tmp/reconciled-runc-suite)
#   FILES           the .bats files to run (default: all but EXCLUDE)
#   BATS_TEST_TIMEOUT  seconds per test (default 120)
# Needs root. Each runtime's TAP output lands in $WORK/results/RUNTIME/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
WORK=${WORK:-/var/tmp/reconciled-runc-suite}
EXCLUDE=${EXCLUDE:-"hooks.bats"}
export BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-120}
runtimes=("$@")
[ ${#runtimes[@]} -gt 0 ] || runtimes=(runc crun reconciled)
runtimes_names=()

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: the suite's tests need root" >&2
	exit 1
fi

missing=""
for p in bats gawk jq libseccomp-dev busybox-static runc crun; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

mkdir -p "$WORK/bin" "$WORK/tmp"
suite="$WORK/runc-v1.1.5"
if [ ! -e "$suite/.ready" ]; then
	moddir=$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json github.com/opencontainers/runc@v1.1.5 | jq -r .Dir)
	rm -rf --one-file-system "$suite"
	mkdir -p "$suite/tests" "$suite/contrib/cmd/recvtty" "$suite/contrib/cmd/seccompagent"
	cp -r "$moddir/tests/integration" "$suite/tests/"
	chmod -R u+w "$suite"
	(cd "$moddir" && GOFLAGS=-mod=mod go build -o "$suite/contrib/cmd/recvtty/recvtty.bin" ./contrib/cmd/recvtty)
	# recvtty runs in the background; one left behind by a failed setup
	# must not hold bats's output pipes open (bats would wait forever):
	# stdio and bats's fd 3 (its TAP stream) are closed.
	cat >"$suite/contrib/cmd/recvtty/recvtty" <<-'EOS'
		#!/bin/sh
		exec "$(dirname "$0")/recvtty.bin" "$@" </dev/null >>"$(dirname "$0")/recvtty.log" 2>&1 3>&-
	EOS
	chmod 0755 "$suite/contrib/cmd/recvtty/recvtty"
	(cd "$moddir" && GOFLAGS=-mod=mod CGO_ENABLED=1 go build -o "$suite/contrib/cmd/seccompagent/seccompagent" ./contrib/cmd/seccompagent) ||
		echo "run.sh: seccompagent did not build: seccomp-notify.bats will fail" >&2
	# The images: built here, not downloaded.
	"$here/busybox-image.sh" "$suite/tests/integration/testdata/busybox-amd64.tar.xz"
	cat >"$suite/tests/integration/get-images.sh" <<-'EOS'
		#!/bin/bash
		# Replaced by reconciled's test/runc-suite/run.sh: the busybox image is
		# built locally from busybox-static; no Debian image (hooks.bats is not run).
		INTEGRATION_ROOT=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
		echo "BUSYBOX_IMAGE=$INTEGRATION_ROOT/testdata/busybox-amd64.tar.xz"
		echo "DEBIAN_IMAGE=$INTEGRATION_ROOT/testdata/debian-amd64.tar.xz"
	EOS
	chmod 0755 "$suite/tests/integration/get-images.sh"
	touch "$suite/.ready"
fi

bin=${RECONCILED_BIN:-}
if [ -z "$bin" ]; then
	"$repo/packaging/build.sh" "$WORK/bin/reconciled" # as shipped
	bin="$WORK/bin/reconciled"
fi
ln -sf "$(readlink -f "$bin")" "$WORK/bin/reconciled-runc"

files=${FILES:-}
if [ -z "$files" ]; then
	for f in "$suite"/tests/integration/*.bats; do
		b=$(basename "$f")
		case " $EXCLUDE " in *" $b "*) continue ;; esac
		files="$files $b"
	done
fi

# The suite's tests put their containers under runc-cgroups-integration-test
# (helpers.bash, set_cgroups_path); their teardown removes the v1
# controllers' directories it knows of, not the cgroup2 one of a hybrid
# host (pod_* from update.bats stays there). After each file what is left
# of that tree is removed if empty: rmdir only, deepest first, nothing
# else touched.
cleanup_suite_cgroups() {
	local d
	# test_busybox: a container of the suite's without a cgroupsPath gets
	# /ID (runc's default), left behind when its test ran out of time.
	for d in /sys/fs/cgroup/runc-cgroups-integration-test /sys/fs/cgroup/*/runc-cgroups-integration-test \
		/sys/fs/cgroup/test_busybox /sys/fs/cgroup/*/test_busybox; do
		[ -d "$d" ] || continue
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		if [ -d "$d" ]; then
			echo "run.sh: $d is still there (processes in it?)" >&2
		fi
	done
}

# A test that ran out of time can leave its runtime behind (runc's `run`
# waiting for a seccomp agent that never came, with its init below it).
# After each file every process whose command line names this suite's
# temporary directory is one this script started: it is killed by PID,
# with its children.
kill_suite_leftovers() {
	local p pid kids
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[ "$pid" != $$ ] || continue
		if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$WORK/tmp/"; then
			kids=$(cat "$p"/task/*/children 2>/dev/null || true)
			echo "run.sh: killing $pid ($({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | cut -c1-100)) and its children $kids" >&2
			kill -KILL "$pid" $kids 2>/dev/null || true
		fi
	done
}

for spec in "${runtimes[@]}"; do
	rt=${spec%%=*}
	case $spec in
	*=*) path=${spec#*=} ;;
	runc) path=$(command -v runc) ;;
	crun) path=$(command -v crun) ;;
	reconciled) path="$WORK/bin/reconciled-runc" ;;
	*) path=$(command -v "$rt") ;;
	esac
	runtimes_names+=("$rt")
	out="$WORK/results/$rt"
	rm -rf "$out"
	mkdir -p "$out"
	start=$(date +%s)
	for f in $files; do
		# Each file in its own bats run: one file's stuck teardown cannot eat
		# the others' results.
		# Under script(1): `runc spec` says terminal: true, and `runc run`
		# without --console-socket then needs a controlling terminal, as
		# runc's CI has (docker run -t).
		# bats 1.8 runs BATS_TEST_TIMEOUT's watchdog as a background job of
		# the test's shell: a test that waits for all its jobs (a bare
		# `wait`, as events.bats' streaming tests do) waits for the
		# watchdog too and always "times out", for every runtime. Such a
		# file runs without the per-test timeout, bounded as a whole.
		# Every file is bounded as a whole too (a teardown or a process
		# left holding bats's pipes can hang it): a file that runs out of
		# time gets a "not ok" line saying so, and its tests not reached
		# are not counted.
		n=$(grep -c '^@test' "$suite/tests/integration/$f")
		limit=(timeout -k 10 $((BATS_TEST_TIMEOUT * n)))
		if grep -qE '^[[:space:]]*wait[[:space:]]*(#.*)?$' "$suite/tests/integration/$f"; then
			limit=(env -u BATS_TEST_TIMEOUT "${limit[@]}")
		fi
		rc=0
		(cd "$suite/tests/integration" && RUNC="$path" TMPDIR="$WORK/tmp" \
			"${limit[@]}" script -qefc "bats --tap $f >$out/$f.tap 2>&1" /dev/null) >/dev/null 2>&1 </dev/null || rc=$?
		if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
			echo "not ok 999 run.sh: $f ran out of its $((BATS_TEST_TIMEOUT * n)) s" >>"$out/$f.tap"
		fi
		kill_suite_leftovers
		cleanup_suite_cgroups
	done
	echo $(($(date +%s) - start)) >"$out/seconds"
done

# The table: passed/failed/skipped per file, one column per runtime.
runtimes=("${runtimes_names[@]}")
count() { # file kind -> number
	local t=$1
	[ -f "$t" ] || { echo "-"; return; }
	case $2 in
	pass) grep -E '^ok ' "$t" | grep -vc '# skip' || true ;;
	fail) grep -cE '^not ok ' "$t" || true ;;
	skip) grep -E '^ok ' "$t" | grep -c '# skip' || true ;;
	esac
}
printf '%-28s' "file (pass/fail/skip)"
for rt in "${runtimes[@]}"; do printf ' %14s' "$rt"; done
echo
declare -A tp tf ts
for f in $files; do
	printf '%-28s' "$f"
	for rt in "${runtimes[@]}"; do
		t="$WORK/results/$rt/$f.tap"
		p=$(count "$t" pass) x=$(count "$t" fail) s=$(count "$t" skip)
		tp[$rt]=$((${tp[$rt]:-0} + p)) tf[$rt]=$((${tf[$rt]:-0} + x)) ts[$rt]=$((${ts[$rt]:-0} + s))
		printf ' %14s' "$p/$x/$s"
	done
	echo
done
printf '%-28s' "TOTAL"
for rt in "${runtimes[@]}"; do printf ' %14s' "${tp[$rt]}/${tf[$rt]}/${ts[$rt]}"; done
echo
printf '%-28s' "seconds"
for rt in "${runtimes[@]}"; do printf ' %14s' "$(cat "$WORK/results/$rt/seconds" 2>/dev/null || echo -)"; done
echo
