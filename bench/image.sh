#!/usr/bin/env bash
# Side-by-side benchmark of the daemon's image path (`reconciled run` with
# spec.image) against skopeo copy + umoci unpack + crun run, in one run:
#  1. cold pull + unpack + start of a ~100 MB image of 10 layers (busybox
#     and 9 of random data, gzip) from a local registry, empty store each
#     round (median of -n, default 3), with each tool's step;
#  2. the daemon's RSS growth during that cold pull;
#  3. warm drop-to-running of an image container against a plain
#     read-only directory root with the same files (p50, p90 of -drops
#     each, default 50, alternated);
#  4. `reconciled image import` of the image as an oci-archive (written
#     once by skopeo) into an empty store, against skopeo copy to an OCI
#     layout + umoci unpack (median of -n);
#  5. `reconciled image pull` through a TCP proxy of imagebench's that cuts
#     the connection once at 50 % of the largest layer blob: the bytes
#     received for that blob and for the whole image, over their sizes.
# A container's start is its write to a FIFO bind-mounted at /sig. Run as
# root from the repository:
#   sudo bench/image.sh [-n 3] [-drops 50]
# Everything it creates (registry, daemon, containers, overlay mounts,
# the archive, stores, layouts and bundles of 4 and 5) lives under one temporary directory and a state directory in /dev/shm,
# and is removed.
set -euo pipefail
# A static binary, as shipped (see the Makefile).
export CGO_ENABLED=0
cd "$(dirname "$0")/.."
missing=""
for p in skopeo umoci crun runc docker-registry busybox-static gcc; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
work=$(mktemp -d /tmp/imagebench.XXXXXX)
# imagebench unmounts what the daemon mounted under the work and state
# directories before it exits; --one-file-system keeps this from emptying
# a mount that a killed run left behind.
trap 'rm -rf --one-file-system "$work"' EXIT
# As make build and a package build it (packaging/build.sh): the container
# stages' own binary appended, the file written with write(2).
packaging/build.sh "$work/reconciled"
go build -o "$work/imagebench.link" ./bench/imagebench
install -m 0755 "$work/imagebench.link" "$work/imagebench"
shim=""
# crun 1.8 refuses the cgroup v1 hybrid layout; the shim hides the empty
# cgroup2 mount from it (as bench/runtime.sh does).
if grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/self/mounts; then
  gcc -shared -fPIC -O2 -o "$work/nohybrid.so" bench/nohybrid.c -ldl
  shim="$work/nohybrid.so"
fi
echo "kernel $(uname -r)"
"$work/imagebench" -reconciled "$work/reconciled" -nohybrid "$shim" -work "$work" "$@"
