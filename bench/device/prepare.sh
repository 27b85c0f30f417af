#!/usr/bin/env bash
# Prepares the cgroup v2 check for a machine without Go, runc or crun (the
# lent "device" machine: Ubuntu 24.04, pure cgroup v2, no network): builds
# here everything bench/device/run.sh runs there, into one archive,
# DIR/kit.tar.gz (default DIR: .devkit, which git ignores):
#
#   - reconciled as shipped (packaging/build.sh), convergebench and
#     runtimebench (bench/converge.sh and bench/runtime.sh build the same),
#     bench/peakrss.c;
#   - this host's busybox (static), runc and crun, with the shared
#     libraries they load other than the C library's (the machine has its
#     own, newer);
#   - the test binaries of the packages whose tests run on a pure v2 host
#     differently from this one (go test -c): executor/cgroups, executor,
#     test and test/e2e; those that start the daemon take the shipped
#     binary from RECONCILED_BIN.
#
# Run as root from the repository (it installs busybox-static, runc, crun and
# gcc where missing, as bench/converge.sh does):
#   bench/device/prepare.sh [DIR]
# then, with the device tool, carrying DIR, in two calls of at most 10
# minutes each (the benchmarks at their defaults, then the tests):
#   command: bench/device/run.sh converge runtime    carry: [".devkit"]
#   command: bench/device/run.sh tests               carry: [".devkit"]
# The archive is about 40 MiB (the tool carries at most 64, the working
# tree included).
set -euo pipefail
export CGO_ENABLED=0
cd "$(dirname "$0")/../.."
dir=${1:-.devkit}
missing=""
for p in busybox-static runc crun gcc; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
mkdir -p "$dir"
stage=$(mktemp -d "$dir/stage.XXXXXX")
trap 'rm -rf --one-file-system "$stage"' EXIT
k=$stage/kit
mkdir -p "$k/bin" "$k/lib"
packaging/build.sh "$k/reconciled"
# The benchmarks and the tests without their symbol tables (-s -w): the
# kit is smaller, what they measure and run is not (reconciled is as
# shipped).
strip=(-ldflags='-s -w')
go build "${strip[@]}" -o "$k/convergebench" ./bench/convergebench
PKG=./bench/runtimebench packaging/build.sh "$k/runtimebench"
gcc -O2 -o "$k/peakrss" bench/peakrss.c
cp /bin/busybox "$k/busybox"
for t in runc crun; do
  cp "$(command -v $t)" "$k/bin/$t"
  # Their libraries, but the C library and the dynamic loader: the
  # machine's own are newer and the others are built against older ones.
  ldd "$(command -v $t)" | awk '$3 ~ /^\// { print $3 }' |
    grep -v -e '/libc\.so' -e '/ld-linux' |
    while read -r lib; do cp -L "$lib" "$k/lib/"; done
done
for p in executor/cgroups executor test test/e2e; do
  go test -c "${strip[@]}" -o "$k/$(echo "$p" | tr / _).test" "./$p"
done
git rev-parse HEAD >"$k/revision"
git status --short >"$k/dirty"
tar -C "$stage" -czf "$dir/kit.tar.gz.new" kit
mv "$dir/kit.tar.gz.new" "$dir/kit.tar.gz"
echo "$dir/kit.tar.gz: $(du -h "$dir/kit.tar.gz" | cut -f1), revision $(cat "$k/revision")$([ -s "$k/dirty" ] && echo ' (modified)')"
