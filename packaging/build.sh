#!/bin/sh
# packaging/build.sh OUT [VERSION] builds reconciled as it is shipped (make
# build, the benchmarks and the end-to-end tests use it):
#
#   - one static binary (no cgo), at OUT, written with write(2) and renamed
#     into place by install(1): a binary fresh from the linker sits in the
#     page cache in 4 KiB pages and every start of it costs 0.6-0.75 ms
#     more on a 2-core VM (the linker writes through a shared mapping);
#   - on amd64, with a lean build of the same command appended (-tags
#     reconciled_lean: the container stages, `reconciled runtime` and
#     reconciled-runc, without the daemon, the image store and their
#     dependencies; linked at 0x40000000) at the next 64 KiB boundary,
#     and a trailer of 48 bytes: "RECONCILEDSTAGE1", then its offset and
#     length in 16 hex digits each. reconciled's ELF entry point
#     (-E executor.shippedEntry, before the Go runtime) maps it from the
#     file in place of itself in a process started as one of those
#     (executor/stage.go): they start in about half the time. A binary
#     without it (go build, go install, one stripped by a packaging tool)
#     runs them itself, slower to start.
#
# VERSION sets what `reconciled version` prints (-X main.version); the git
# revision is recorded either way (-buildvcs=auto), in both builds. PKG
# (environment) builds another main package the same way, the lean build
# of reconciled appended (bench/runtimebench, which runs the executor in
# its own process as the daemon does, and execs itself for the stages).
set -eu
out=$1
version=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
export CGO_ENABLED=0
go=${GO:-go}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/reconciled-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$root"
pkg=${PKG:-./cmd/reconciled}
entry=""
if [ "$("$go" env GOARCH)" = amd64 ]; then
	entry="-E reconciled.dev/reconciled/executor.shippedEntry"
fi
ldflags=""
if [ -n "$version" ]; then
	ldflags="-X main.version=$version"
fi
"$go" build -buildvcs=auto -ldflags "$entry $ldflags" -o "$tmp/main" "$pkg"
if [ -z "$entry" ]; then
	install -m 0755 "$tmp/main" "$out"
	exit 0
fi
# No symbol table or DWARF (panics still print their stacks: the
# runtime's own tables stay), linked far above reconciled's own segments.
"$go" build -tags reconciled_lean -buildvcs=auto -ldflags "-s -w -T 0x40001000 $ldflags" -o "$tmp/stage" ./cmd/reconciled
size=$(stat -c %s "$tmp/main")
off=$(( (size + 65535) / 65536 * 65536 ))
len=$(stat -c %s "$tmp/stage")
cp "$tmp/main" "$tmp/out"
truncate -s "$off" "$tmp/out"
cat "$tmp/stage" >>"$tmp/out"
printf 'RECONCILEDSTAGE1%016x%016x' "$off" "$len" >>"$tmp/out"
install -m 0755 "$tmp/out" "$out"
