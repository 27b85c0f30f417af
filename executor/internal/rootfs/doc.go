// Package rootfs builds a container's root filesystem from an OCI spec and
// pivots into it. It is the part of the container-init stage that runs in
// the container's new mount namespace, as root, before privileges are
// dropped.
//
// Setup(spec, bundle) is Prepare then Finalize:
//
//   - Prepare makes "/" rslave (or linux.rootfsPropagation), makes the
//     rootfs's parent mount private if it is shared, binds the rootfs onto
//     itself, mounts spec.Mounts in order, populates /dev, pivots into the
//     rootfs with pivot_root(".", ".") and detaches the old root, then
//     applies linux.rootfsPropagation to the new "/" (runc's order). Unlike
//     runc, only the old root (not the container's tree) is made rslave
//     before it is detached, so a mount's own "shared"/"rshared" option
//     survives pivot_root (see pivotRoot).
//   - Finalize applies linux.readonlyPaths, linux.maskedPaths and
//     root.readonly inside the new root.
//
// From a mount namespace made from a template (template.go: MakeTemplate,
// an empty read-only tmpfs as the only mount), SetupOptions with
// Options.Detached (PrepareDetached: the rootfs, made rslave, and every
// bind source, cloned from the host as detached trees) attaches the rootfs
// over "/" and chroots into it instead: no host mount is in that
// namespace to pivot away from or to detach.
//
// A caller that writes sysctls calls Prepare, writes them, then Finalize:
// readonlyPaths usually lists /proc/sys. Chdir sets the process's working
// directory inside the new root safely; OpenInRoot and MkdirAllInRoot
// resolve a path inside any root directory fd.
//
// # Mounts
//
// proc, sysfs, tmpfs, devpts, mqueue and any other filesystem type: a new
// mount with the options split into mount-point flags (ro, nosuid, nodev,
// noexec, atime modes, nosymfollow), superblock flags (sync, dirsync,
// lazytime, mand), propagation (private, rprivate, slave, rslave, shared,
// rshared, unbindable, runbindable, applied after the mount in the order
// given) and the filesystem's own options (size=, mode=, newinstance, ...).
// The "r" forms (rro, rnosuid, ...) apply to the whole tree. Bind mounts
// ("bind"/"rbind" option or type "bind"): relative sources are relative to
// the bundle; as in runc, a plain flag applies to the top mount and its "r"
// form to every mount of the tree (mount_setattr AT_RECURSIVE): an "ro"
// rbind leaves the mounts below it writable, an "rro" one does not. Flags
// not named
// keep their value, so remounting read-only never tries to clear a flag the
// kernel has locked. cgroup / cgroup2: see cgroup.go (v2: a cgroup2 mount;
// v1: a tmpfs with one mount per hierarchy).
//
// Missing mount targets are created: a directory for filesystems and
// directory sources, an empty file for other sources. Only a procfs may be
// mounted on /proc; only a short list of /proc files may be bound below
// /proc from a procfs; a proc or sysfs destination reached through a
// symlink is refused. Idmapped mounts and "tmpcopyup" are refused.
//
// # /dev
//
// Unless the spec bind-mounts /dev, /dev is populated: a tmpfs is mounted
// there when the spec has no /dev mount ("nosuid,strictatime,mode=755,
// size=65536k"), and devpts on /dev/pts and a tmpfs on /dev/shm when the
// spec has none. In it: null, zero, full, random, urandom, tty, then
// linux.devices (a spec device replaces a default at the same path), made
// with mknod, or bind-mounted from the host's node when mknod is not
// permitted; ptmx -> pts/ptmx; fd, stdin, stdout, stderr -> /proc/self/fd/...
// An entry that already exists (a spec bind onto /dev/xyz) is left alone.
// A read-only /dev mount is made read-only after it is populated.
// /dev/console is not made here.
//
// # Security
//
// Every path inside the rootfs is resolved with openat2(RESOLVE_IN_ROOT|
// RESOLVE_NO_MAGICLINKS), or a component-wise O_NOFOLLOW walk on kernels
// without it, so that symlinks and ".." stay inside the root: a target that
// is a symlink to a host path is created and mounted on inside the rootfs
// (CVE-2024-21626, CVE-2025-52565 class). The resolved fd is checked
// (directory, file, device number) and the mount goes onto that fd:
// open_tree/fsmount + move_mount(MOVE_MOUNT_T_EMPTY_PATH) and
// mount_setattr, or on kernels without them mount(2) on /proc/self/fd/N
// after checking that /proc is the root of a procfs. Masking binds the
// container's /dev/null only after checking on the opened fd that it is the
// character device 1:3 (CVE-2025-31133); device nodes are made with mknodat
// in a directory fd and checked with fstat.
//
// # Not done
//
//   - linux.mountLabel (SELinux context=) is ignored (the executor refuses
//     it). uidMappings/gidMappings on mounts (idmapped mounts) work only
//     for bind mounts made outside a user namespace (PrepareOutside:
//     idmapping needs privilege over the filesystem's user namespace);
//     elsewhere they are refused.
//   - On kernels without mount_setattr (< 5.12) a recursive read-only or
//     other recursive flag change applies to the top mount only, and the
//     mount(2) fallback finds a new mount again by its path.
//   - Bind sources are host paths from the spec and are trusted: they are
//     opened normally, symlinks followed.
//   - The fallbacks are chosen with package-level flags: one Setup per
//     process, not concurrent ones.
//
// # What it must not do
//
// It must not write sysctls, set the hostname, touch cgroup files, drop
// privileges or exec anything: that is the caller's. It must not import
// the rest of reconciled, and it must not leave a file descriptor open
// when it returns.
package rootfs
