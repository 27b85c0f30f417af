#!/bin/sh
# packaging/build.sh OUT [VERSION] builds reconciled as it is shipped (make
# build, the benchmarks and the end-to-end tests use it):
#
#   - one static binary (no cgo), at OUT, written with write(2) and renamed
#     into place by install(1): a binary fresh from the linker sits in the
#     page cache in 4 KiB pages and every start of it costs 0.6-0.75 ms
#     more on a 2-core VM (the linker writes through a shared mapping);
#   - with cmd/reconciled-stage appended to its end, behind a trailer of
#     48 bytes: "RECONCILEDSTAGE1", then the stage binary's offset and
#     length in 16 hex digits each. The executor runs the container
#     monitor, init and exec stages from a sealed memfd copy of it
#     (executor/stage.go) instead of from reconciled itself: they start in
#     about half the time. A binary without the trailer (go build, go
#     install, or one stripped by a packaging tool) runs them from itself.
#
# VERSION sets what `reconciled version` prints (-X main.version); the git
# revision is recorded either way (-buildvcs=auto). PKG (environment)
# builds another main package the same way, stage appended
# (bench/runtimebench, which runs the executor in its own process as the
# daemon does).
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
if [ -n "$version" ]; then
	"$go" build -buildvcs=auto -ldflags "-X main.version=$version" -o "$tmp/main" "$pkg"
else
	"$go" build -buildvcs=auto -o "$tmp/main" "$pkg"
fi
# No symbol table or DWARF: a smaller copy per memfd; panics still print
# their stacks (the runtime's own tables stay).
"$go" build -buildvcs=false -ldflags "-s -w" -o "$tmp/stage" ./cmd/reconciled-stage
off=$(stat -c %s "$tmp/main")
len=$(stat -c %s "$tmp/stage")
printf 'RECONCILEDSTAGE1%016x%016x' "$off" "$len" >"$tmp/trailer"
cat "$tmp/main" "$tmp/stage" "$tmp/trailer" >"$tmp/out"
install -m 0755 "$tmp/out" "$out"
