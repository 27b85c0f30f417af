// Package layer unpacks OCI image layers into directories and mounts an
// image's root filesystem from them.
//
// Decompress detects gzip, zstd or an uncompressed tar by magic bytes.
// Unpack extracts one layer's tar stream into its own empty directory,
// translating OCI whiteouts into overlayfs's form. Mount stacks the layer
// directories with overlayfs (read-only, or writable with an upper and a
// work directory), or bind-mounts a lone layer read-only; Unmount and
// Mounted undo and observe that.
//
// It must not: verify digests (the caller hashes the streams it passes in
// and checks them before trusting a layer directory), fetch anything, keep
// state on disk beyond the directories it is given, fsync (a caller that
// records a layer as complete syncs its filesystem first), or write,
// change or link anything outside the directory it unpacks into.
//
// # Threat model
//
// A layer is hostile input: its author controls every name, link target,
// type, mode, owner, xattr and the order of the entries. Unpack runs as
// root on the host, where one write, chmod, chown or link outside the layer
// directory is a host compromise. Nothing else writes into the layer
// directory while Unpack runs (the caller owns it and no container sees it
// yet), so the hazards are the entries themselves and what earlier entries
// left behind: symlinks, hard links, directories replaced by other types.
//
// # How each escape is prevented
//
// The layer directory is opened once; every later operation is relative
// to that fd or to fds reached from it, never a path string the kernel
// walks from "/":
//
//   - Names with ".." or absolute names ("../../etc/x", "/etc/x") are
//     cleaned as if rooted at "/", as docker and containerd do: both land
//     at etc/x inside the layer.
//   - Parent directories are opened with openat2(RESOLVE_IN_ROOT |
//     RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) on the layer fd: a symlink
//     made by an earlier entry ("a -> /etc", "b -> ../../..") is resolved
//     as if the layer directory were "/", so "a/x" is the layer's etc/x,
//     never the host's (docker CVE-2018-15664's target, statically); magic
//     links (/proc/self/root) and other mounts are refused. Missing parents
//     are created (0755, root) component by component, each resolved the
//     same way; a dangling symlink among them fails the entry rather than
//     having its target created.
//   - The entry itself, the last component, is never followed: what is at
//     the name is lstat-ed and removed first (a directory with its
//     contents, by fd, O_NOFOLLOW at each level) unless both are
//     directories; then it is created with mkdirat, openat(O_CREAT |
//     O_EXCL | O_NOFOLLOW), symlinkat, linkat or mknodat. A regular file is
//     therefore always a new inode: a later file entry over a hard link
//     replaces the link and never writes into the inode it shares.
//   - Metadata is applied to what this entry just created, without
//     following it: regular files and directories through the fd they were
//     written or opened (O_DIRECTORY | O_NOFOLLOW) with: fchown, fchmod,
//     fsetxattr; symlinks, devices and fifos with fchownat and utimensat
//     (AT_SYMLINK_NOFOLLOW), fchmodat2 (AT_SYMLINK_NOFOLLOW; on kernels
//     before 6.6 chmod of /proc/self/fd/N of an O_PATH | O_NOFOLLOW fd
//     checked to be the expected type), and lsetxattr on
//     /proc/self/fd/<parent>/<name>. Symlinks are never chmod-ed.
//     Directory times are set after all entries (children change them),
//     again through the parent with AT_SYMLINK_NOFOLLOW, and only where a
//     directory still is: a directory later replaced by a symlink to the
//     host is skipped, not followed.
//   - Hard links: the target is opened with openat2(O_PATH | O_NOFOLLOW,
//     RESOLVE_IN_ROOT ...), so it is a file of this layer (a target
//     "outside" resolves inside the layer, where it does not exist, and
//     the entry fails) and a link to a symlink links the symlink itself;
//     linkat(fd, "", AT_EMPTY_PATH) links that very inode. A hard link's
//     own header mode, owner and times are not applied: they belong to the
//     inode its first entry created. containerd CVE-2021-32760 chmod-ed a
//     hard link by path, following it when it was a symlink to a host file.
//     Links to directories are refused.
//   - The layer root: an entry naming it ("", ".", "/", "a/..") may only
//     be a directory, whose metadata the layer directory takes. umoci
//     CVE-2021-29136 let a root entry be a symlink to a host directory and
//     wrote the rest of the layer through it.
//   - Whiteouts: "dir/.wh.name" removes what this layer put at dir/name
//     and creates the character device 0:0 there; "dir/.wh..wh..opq" sets
//     trusted.overlay.opaque=y on dir (created if missing); other
//     ".wh..wh." names (aufs metadata) are skipped. The directory is
//     resolved as any parent is, so a whiteout below a symlink to the host
//     cannot remove or mark a host file.
//   - Xattrs (PAX SCHILY.xattr.*) are all set, and a failure fails the
//     entry, except: trusted.overlay.* is refused (it would steer overlayfs:
//     redirect, metacopy, origin; deletions must come as whiteouts), and
//     security.selinux is skipped where the filesystem does not support it.
//   - Device nodes and fifos are created as given: we are root, and the
//     container's device cgroup governs their use.
//   - Unknown entry types are refused, not skipped.
//
// # Mounts
//
// Mount uses the new mount API: fsopen("overlay") with one "lowerdir+"
// per layer (Linux 6.8+), so 130 layers of long paths mount although the
// classic "lowerdir=a:b:c" string must fit in one page; fsmount with
// MOUNT_ATTR_RDONLY for read-only images; move_mount onto an fd of the
// target. Before 6.8 (or where "lowerdir+" is an unknown parameter) it
// falls back to mount(2), naming each directory by the number of an fd
// opened on it, relative to /proc/self/fd as the working directory of a
// locked, CLONE_FS-unshared OS thread that ends with the call: the
// option string stays short and the process's working directory is never
// touched. A single read-only layer is an open_tree clone made read-only
// with mount_setattr. Refusals by the kernel come back wrapping
// ErrOverlayUnusable, "overlayfs is not usable here: ...", with the
// kernel's own message where the mount API gives one.
package layer
