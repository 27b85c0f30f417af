#!/bin/bash
# run.sh runs opencontainers/runtime-tools v0.9.0's validation programs
# (validation/*/*.go, each a main package printing TAP) against runc, crun
# and reconciled (as `reconciled-runc`, a symlink to the binary), and prints
# a side-by-side table: ok/not ok per program and runtime, then per runtime
# the programs that passed entirely (exit 0, no `not ok` and no error
# reported outside an assertion) and the number of `not ok` assertions.
#
# Offline but for the Go module proxy and Debian apt:
#   - runtime-tools comes from the module proxy's zip of
#     github.com/opencontainers/runtime-tools@v0.9.0, copied somewhere
#     writable. That tag predates modules (Godeps, no vendor/ in the zip): a
#     go.mod is written with runtime-spec v1.0.2 and selinux v1.2.2 pinned,
#     and satori/go.uuid v1.1.0 (later versions' NewV4 returns an error
#     too); the rest is resolved by `go mod tidy` (GOFLAGS=-mod=mod).
#     runtimetest (which runs inside the containers) and one binary per
#     validation program are built from it, as upstream's Makefile does.
#   - the rootfs the programs unpack from ./rootfs-amd64.tar.gz into each
#     bundle is built here from /bin/busybox (busybox-static) by
#     ../runc-suite/busybox-image.sh; ROOTFS=upstream uses the tarball in
#     the module zip instead (busybox 1.28 with /bin, /dev, /proc, /sys and
#     /etc/passwd, /etc/group only).
#   - busybox-static, runc, crun, gcc, jq, xz-utils are Debian packages,
#     installed if missing.
#
# Each runtime is called through a wrapper in $WORK/bin that adds
# `--root $WORK/state/RUNTIME`: the programs' containers are kept apart
# from any other user of the runtime on this host, and what a timed-out
# program leaves behind (containers, bundles under $WORK/tmp, the fixed
# cgroups /cgrouptest and testdir/cgrouptest/container) is removed after
# each program without touching anything else.
# crun 1.8 refuses a cgroup v1 hybrid layout ("cgroups in hybrid mode not
# supported"): on such a host its wrapper preloads bench/nohybrid.c (built
# here with gcc), which hides the cgroup2 mount at /sys/fs/cgroup/unified
# from crun's statfs, as bench/runtime.sh does; crun then runs in legacy
# (v1) mode.
#
# What fails for every runtime whatever the host: hooks (it expects
# "post-start1" where its hooks write "post-start1 called"), misc_props #1
# (no runtimetest in that bundle), pidfile (kills a container whose `true`
# has exited), start #7 (a create without process), two runtime-spec 1.0
# rules that runc set aside and the others follow runc in (prestart: hooks
# run in create, not start; delete #2-3: a created container is deleted),
# hooks_stdin's pid (read after the process exited) and process_rlimits'
# soft RLIMIT_NOFILE (runtimetest is built with this Go, whose runtime
# sets its own soft limit to hard-1 at start, Go 1.21 and later).
#
# Usage: test/runtime-tools/run.sh [RUNTIME...]   (default: runc crun reconciled)
#   a RUNTIME is runc, crun, reconciled, or NAME=PATH (any runc-like binary)
#   RECONCILED_BIN  the reconciled binary (default: built from this tree)
#   WORK            work directory (default /var/tmp/reconciled-runtime-tools)
#   PROGRAMS        the validation programs to run (default: all)
#   TIMEOUT         seconds per program (default 60)
#   ROOTFS          busybox (default) or upstream, see above
# Needs root. Each runtime's TAP output lands in $WORK/results/RUNTIME/
# (PROGRAM.tap: stdout, PROGRAM.err: stderr, PROGRAM.rc: exit status).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
WORK=${WORK:-/var/tmp/reconciled-runtime-tools}
TIMEOUT=${TIMEOUT:-60}
ROOTFS=${ROOTFS:-busybox}
runtimes=("$@")
[ ${#runtimes[@]} -gt 0 ] || runtimes=(runc crun reconciled)
runtimes_names=()

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: the validation programs need root" >&2
	exit 1
fi
case $ROOTFS in busybox | upstream) ;; *)
	echo "run.sh: ROOTFS=$ROOTFS: want busybox or upstream" >&2
	exit 1
	;;
esac

missing=""
for p in busybox-static runc crun gcc jq xz-utils; do
	dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
	# shellcheck disable=SC2086 # one word per package
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi

mkdir -p "$WORK/bin" "$WORK/tmp" "$WORK/state"
WORK=$(cd "$WORK" && pwd)
tools="$WORK/runtime-tools-v0.9.0"
if [ ! -e "$tools/.ready" ]; then
	moddir=$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json github.com/opencontainers/runtime-tools@v0.9.0 | jq -r .Dir)
	rm -rf --one-file-system "$tools"
	cp -r "$moddir" "$tools"
	chmod -R u+w "$tools"
	cat >"$tools/go.mod" <<-'EOS'
		module github.com/opencontainers/runtime-tools

		go 1.16

		require (
			github.com/opencontainers/runtime-spec v1.0.2
			github.com/opencontainers/selinux v1.2.2
			github.com/satori/go.uuid v1.1.0
		)
	EOS
	(
		cd "$tools"
		export GOFLAGS=-mod=mod
		go mod tidy
		CGO_ENABLED=0 go build -o runtimetest ./cmd/runtimetest
		mkdir -p programs
		for d in validation/*/; do
			p=$(basename "$d")
			[ "$p" != util ] || continue
			go build -o "programs/$p" "./$d"
		done
		# validation/*.go at the top level (none at v0.9.0, some in
		# other tags): one program each.
		for f in validation/*.go; do
			[ -e "$f" ] || continue
			go build -o "programs/$(basename "$f" .go)" "$f"
		done
	)
	mv "$tools/rootfs-amd64.tar.gz" "$tools/rootfs-upstream.tar.gz"
	touch "$tools/.ready"
fi
# The rootfs the programs unpack into each bundle, from their working
# directory.
if [ "$ROOTFS" = upstream ]; then
	cp "$tools/rootfs-upstream.tar.gz" "$tools/rootfs-amd64.tar.gz"
else
	[ -f "$WORK/busybox.tar.xz" ] || "$repo/test/runc-suite/busybox-image.sh" "$WORK/busybox.tar.xz"
	xz -dc "$WORK/busybox.tar.xz" | gzip -n >"$tools/rootfs-amd64.tar.gz"
fi

bin=${RECONCILED_BIN:-}
if [ -z "$bin" ]; then
	"$repo/packaging/build.sh" "$WORK/bin/reconciled" # as shipped
	bin="$WORK/bin/reconciled"
fi
ln -sf "$(readlink -f "$bin")" "$WORK/bin/reconciled-runc"

shim=""
if grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/self/mounts; then
	gcc -shared -fPIC -O2 -o "$WORK/bin/nohybrid.so" "$repo/bench/nohybrid.c" -ldl
	shim="$WORK/bin/nohybrid.so"
fi

programs=${PROGRAMS:-}
if [ -z "$programs" ]; then
	for f in "$tools"/programs/*; do
		programs="$programs $(basename "$f")"
	done
fi

# mounts_under DIR: the mount points under DIR, deepest first.
mounts_under() {
	awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# cleanup RUNTIME WRAPPER: remove what one program left behind: its
# containers (only those under this run's --root), its bundles (after
# unmounting anything left mounted in them: a rootfsPropagation "shared"
# test can propagate a mount back here) and the empty cgroups the programs
# name (rmdir only, deepest first).
cleanup() {
	local rt=$1 w=$2 id m d
	for id in $("$w" list -q 2>/dev/null); do
		"$w" kill "$id" KILL >/dev/null 2>&1 || true
		"$w" delete --force "$id" >/dev/null 2>&1 || echo "run.sh: $rt: container $id not deleted" >&2
	done
	for m in $(mounts_under "$WORK/tmp/$rt"); do
		umount -l "$m" || true
	done
	if [ -n "$(mounts_under "$WORK/tmp/$rt")" ]; then
		echo "run.sh: mounts left under $WORK/tmp/$rt: not removing it" >&2
	else
		rm -rf --one-file-system "$WORK/tmp/$rt"
		mkdir -p "$WORK/tmp/$rt"
	fi
	for d in /sys/fs/cgroup/cgrouptest /sys/fs/cgroup/*/cgrouptest \
		/sys/fs/cgroup/testdir /sys/fs/cgroup/*/testdir \
		$(awk -F: '$3 != "/" { sub(/^name=/, "", $2); print "/sys/fs/cgroup/" ($2 == "" ? "unified" : $2) $3 "/testdir" }' /proc/self/cgroup); do
		[ -d "$d" ] || continue
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		[ ! -d "$d" ] || echo "run.sh: $d is still there (processes in it?)" >&2
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
	preload=""
	[ "$rt" != crun ] || preload=$shim
	w="$WORK/bin/rt-$rt"
	{
		echo '#!/bin/sh'
		echo "# $rt for runtime-tools' validation, its containers under its own --root."
		if [ -n "$preload" ]; then
			printf 'LD_PRELOAD=%q exec %q --root %q "$@"\n' "$preload" "$path" "$WORK/state/$rt"
		else
			printf 'exec %q --root %q "$@"\n' "$path" "$WORK/state/$rt"
		fi
	} >"$w"
	chmod 0755 "$w"
	out="$WORK/results/$rt"
	rm -rf --one-file-system "$out"
	mkdir -p "$out" "$WORK/tmp/$rt" "$WORK/state/$rt"
	cleanup "$rt" "$w"
	start=$(date +%s)
	for p in $programs; do
		# The programs read ./runtimetest and ./rootfs-amd64.tar.gz and make
		# their bundles in $TMPDIR.
		rc=0
		(cd "$tools" && RUNTIME="$w" TMPDIR="$WORK/tmp/$rt" \
			timeout -k 10 "$TIMEOUT" "./programs/$p") >"$out/$p.tap" 2>"$out/$p.err" </dev/null || rc=$?
		echo "$rc" >"$out/$p.rc"
		cleanup "$rt" "$w"
	done
	echo $(($(date +%s) - start)) >"$out/seconds"
done

# tapcount FILE: "OK NOTOK ERRORS" for one program's TAP. ERRORS counts
# the diagnostics (YAML blocks) that follow no assertion and carry a
# non-empty "error": the lifecycle programs (hooks, prestart, poststart,
# ...) report a failure only so, with no `not ok` and a plan of 1..0; when
# they pass they print no assertion at all (process_rlimits_fail prints
# nothing).
tapcount() {
	awk '
		/^ok / { ok++; attached = 1; next }
		/^not ok / { notok++; attached = 1; next }
		/^  ---$/ { orphan = !attached; next }
		/^  \.\.\.$/ { orphan = 0; attached = 0; next }
		orphan && /^    "error": "[^"]/ { errors++; orphan = 0 }
		END { printf "%d %d %d\n", ok, notok, errors }
	' "$1"
}

# The table: ok/not ok per program, one column per runtime; "E" after the
# counts when the program reported an error outside its assertions, and
# its exit status when not 0 ("rc 124": timed out). A program passed when
# it exited 0 with neither a `not ok` nor such an error.
runtimes=("${runtimes_names[@]}")
printf '%-36s' "program (ok/not ok)"
for rt in "${runtimes[@]}"; do printf ' %18s' "$rt"; done
echo
declare -A passed passedok notok errors
for p in $programs; do
	printf '%-36s' "$p"
	for rt in "${runtimes[@]}"; do
		t="$WORK/results/$rt/$p.tap"
		if [ ! -f "$t" ]; then
			printf ' %18s' "-"
			continue
		fi
		read -r o x e < <(tapcount "$t")
		rc=$(cat "$WORK/results/$rt/$p.rc")
		notok[$rt]=$((${notok[$rt]:-0} + x))
		errors[$rt]=$((${errors[$rt]:-0} + e))
		cell="$o/$x"
		[ "$e" = 0 ] || cell="$cell E"
		[ "$rc" = 0 ] || cell="$cell rc $rc"
		if [ "$rc" = 0 ] && [ "$x" = 0 ] && [ "$e" = 0 ]; then
			passed[$rt]=$((${passed[$rt]:-0} + 1))
		fi
		if [ "$rc" = 0 ] && [ "$x" = 0 ] && [ "$o" -gt 0 ]; then
			passedok[$rt]=$((${passedok[$rt]:-0} + 1))
		fi
		printf ' %18s' "$cell"
	done
	echo
done
n=$(echo "$programs" | wc -w)
row() { # label array-name
	local -n a=$2
	printf '%-36s' "$1"
	for rt in "${runtimes[@]}"; do printf ' %18s' "${a[$rt]:-0}"; done
	echo
}
row "programs passed (of $n)" passed
row "assertions not ok" notok
row "errors outside assertions" errors
# The count behind earlier figures: exit 0, no `not ok` and at least one
# `ok` (the lifecycle programs, which print no assertion even when they
# pass, count as failed).
row "passed with an ok (of $n)" passedok
printf '%-36s' "seconds"
for rt in "${runtimes[@]}"; do printf ' %18s' "$(cat "$WORK/results/$rt/seconds" 2>/dev/null || echo -)"; done
echo
