#!/usr/bin/env bash
# busybox-image.sh OUTDIR
#
# Builds an OCI image layout directory at OUTDIR holding one small image made
# from Debian's busybox-static (/bin/busybox), offline: no network, no Go, only
# coreutils, tar, gzip, sha256sum, printf (and dpkg, for the architecture).
#
#   one gzip layer:  bin/busybox and symlinks to it (sh echo cat ls sleep date
#                    id env true hostname wc tail), etc/passwd and etc/group
#                    (root, and nobody/nogroup 65534), root/ (0700), tmp/ (1777)
#   config:          this host's architecture, os linux, Cmd ["/bin/sh"], PATH
#   index.json:      one manifest, annotated org.opencontainers.image.ref.name=1
#                    (a tag: give the repository when importing)
#
# The layer tar is deterministic (sorted names, mtime 0, owner 0:0, gzip -n),
# so the same busybox always gives the same digests. Import it with:
#
#   reconciled image import --name example.local/busybox:1 OUTDIR
#
# BUSYBOX=/path/to/static/busybox overrides /bin/busybox.
set -euo pipefail
export LC_ALL=C

die() { printf 'busybox-image.sh: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || { printf 'usage: %s OUTDIR\n' "$0" >&2; exit 2; }
out=$1
busybox=${BUSYBOX:-/bin/busybox}
applets=(sh echo cat ls sleep date id env true hostname wc tail)

[ -f "$busybox" ] || die "$busybox is missing: apt-get install busybox-static"
if [ -z "${BUSYBOX:-}" ] && command -v dpkg-query >/dev/null; then
	# Debian's dynamically linked busybox installs the same path, and would
	# not run in an image without a libc.
	pkg=$(dpkg-query -S "$busybox" 2>/dev/null | cut -d: -f1 || true)
	case $pkg in
	busybox-static | "") ;;
	*) die "$busybox comes from $pkg, not busybox-static (a static binary is needed): apt-get install busybox-static" ;;
	esac
fi
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
	die "$out exists and is not empty"
fi

# The OCI (GOARCH) name of this host's architecture, and its variant.
if command -v dpkg >/dev/null; then
	deb=$(dpkg --print-architecture)
else
	deb=$(uname -m)
fi
variant=
case $deb in
amd64 | x86_64) arch=amd64 ;;
arm64 | aarch64) arch=arm64 variant=v8 ;;
armhf | armv7l) arch=arm variant=v7 ;;
armel) arch=arm variant=v5 ;;
i386 | i686) arch=386 ;;
ppc64el | ppc64le) arch=ppc64le ;;
s390x) arch=s390x ;;
riscv64) arch=riscv64 ;;
mips64el) arch=mips64le ;;
loong64 | loongarch64) arch=loong64 ;;
*) die "unknown architecture $deb" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The root filesystem, with every mode set explicitly (no umask in the digest).
root=$work/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp"
chmod 0755 "$root" "$root/bin" "$root/etc"
chmod 0700 "$root/root"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
for a in "${applets[@]}"; do
	ln -s busybox "$root/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"

tar --create --file="$work/layer.tar" --directory="$root" --format=gnu \
	--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
	bin etc root tmp
gzip -n -9 <"$work/layer.tar" >"$work/layer.tar.gz"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { wc -c <"$1" | tr -d ' '; }

# blob FILE: moves FILE into the layout's blobs, printing its digest hex.
blobs=$out/blobs/sha256
mkdir -p "$blobs"
blob() {
	local h
	h=$(sha "$1")
	mv "$1" "$blobs/$h"
	chmod 0644 "$blobs/$h"
	printf '%s' "$h"
}

diff_id=$(sha "$work/layer.tar")
layer_size=$(size "$work/layer.tar.gz")
layer=$(blob "$work/layer.tar.gz")

platform=$(printf '"architecture":"%s","os":"linux"' "$arch")
if [ -n "$variant" ]; then
	platform=$(printf '%s,"variant":"%s"' "$platform" "$variant")
fi

printf '{%s,"config":{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"examples/images/busybox-image.sh"}]}' \
	"$platform" "$diff_id" >"$work/config.json"
config_size=$(size "$work/config.json")
config=$(blob "$work/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
	"$config" "$config_size" "$layer" "$layer_size" >"$work/manifest.json"
manifest_size=$(size "$work/manifest.json")
manifest=$(blob "$work/manifest.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"},"platform":{%s}}]}\n' \
	"$manifest" "$manifest_size" "$platform" >"$out/index.json"
printf '{"imageLayoutVersion":"1.0.0"}\n' >"$out/oci-layout"
chmod 0644 "$out/index.json" "$out/oci-layout"

printf 'sha256:%s\n' "$manifest"
