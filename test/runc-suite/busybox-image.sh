#!/bin/bash
# busybox-image.sh OUT.tar.xz builds the rootfs tarball runc's integration
# suite expects as testdata/busybox-amd64.tar.xz (docker-library's glibc
# busybox image) from the local /bin/busybox (busybox-static): every applet
# hard-linked in /bin, the image's /etc/passwd and /etc/group, and its
# directories. No network.
set -euo pipefail
export LC_ALL=C
out=$1
busybox=${BUSYBOX:-/bin/busybox}
[ -f "$busybox" ] || { echo "busybox-image.sh: $busybox is missing: apt-get install busybox-static" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf --one-file-system "$work"' EXIT
r=$work/rootfs
mkdir -p "$r"/{bin,dev,etc,home,proc,root,sys,tmp,usr/sbin,var/spool/mail,var/www}
chmod 0700 "$r/root"
chmod 1777 "$r/tmp"
cp "$busybox" "$r/bin/busybox"
chmod 0755 "$r/bin/busybox"
for a in $("$busybox" --list); do
	[ "$a" = busybox ] || ln "$r/bin/busybox" "$r/bin/$a"
done
cat >"$r/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
P
cat >"$r/etc/group" <<'G'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
G
mkdir -p "$(dirname "$out")"
tar --numeric-owner --owner=0 --group=0 --sort=name -C "$r" -cJf "$out.tmp" .
mv "$out.tmp" "$out"
