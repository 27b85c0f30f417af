//go:build linux

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// A mount namespace made from a template: the container's init leaves the
// host's mount namespace for a template whose only mount is an empty,
// read-only tmpfs (MakeTemplate), and unshares a copy of it. The rootfs and
// the bind mounts are cloned from the host as detached trees before the
// setup joins that namespace (PrepareDetached); the rootfs is attached over
// the namespace's root, and the init and the setup chroot into it
// (SetupOptions with Options.Detached).
//
// pivot_root is then never called for a container. It walks every thread
// on the host (chroot_fs_refs), and detaching the old root (the copy of
// the host's mounts the namespace was made with) waits for an expedited
// RCU grace period: 0.7 ms of a create blocked in synchronize_rcu_expedited
// on a 2-core VM. Copying the host's mount table for every container, and
// unmounting it again, is gone too.
//
// What lies under the container's root is the empty tmpfs: a process that
// escapes a chroot (CAP_SYS_CHROOT) or unmounts "/" (CAP_SYS_ADMIN) finds
// nothing of the host there, as after pivot_root. setns(CLONE_NEWNS) into
// the namespace (exec, nsenter) lands on the top mount of its root, the
// rootfs.

// MakeTemplate makes the template mount namespace and returns an fd of it
// (its /proc/thread-self/ns/mnt). It must run on a locked OS thread that is
// thrown away afterwards: the thread leaves the host's mount namespace.
func MakeTemplate() (*os.File, error) {
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
		return nil, sysErr("unshare(CLONE_FS|CLONE_NEWNS)", err)
	}
	ns, err := os.Open("/proc/thread-self/ns/mnt")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		ns.Close()
		return nil, fmt.Errorf("mount namespace template: %w", err)
	}
	// Nothing done here may reach the host's mounts.
	if err := mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fail(fmt.Errorf("make / private: %w", err))
	}
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fail(sysErr("fsopen tmpfs", err))
	}
	defer unix.Close(fsfd)
	for _, kv := range [][2]string{{"size", "4k"}, {"nr_inodes", "1"}, {"mode", "0555"}} {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return fail(sysErr("fsconfig "+kv[0]+"="+kv[1], err))
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fail(sysErr("fsconfig create", err))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return fail(sysErr("fsmount", err))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, "/", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fail(sysErr("move_mount onto /", err))
	}
	if err := unix.Fchdir(mfd); err != nil {
		return fail(sysErr("fchdir", err))
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fail(sysErr("pivot_root", err))
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fail(sysErr("detach the old root", err))
	}
	if err := unix.Chdir("/"); err != nil {
		return fail(sysErr("chdir /", err))
	}
	return ns, nil
}

// FromTemplate reports whether a container of spec can be set up in a
// mount namespace made from the template, and why not: everything it
// mounts from the host must be opened before the setup joins the
// namespace (its binds and rootfs), and the pivot_root path keeps what
// only it does (a linux.rootfsPropagation, the host's "/" as the root,
// cgroup mounts, which bind the host's hierarchies, idmapped mounts).
func FromTemplate(spec *specs.Spec, bundle string) (bool, string) {
	if spec == nil || spec.Root == nil || spec.Root.Path == "" {
		return false, "no root.path"
	}
	if spec.Linux != nil && spec.Linux.RootfsPropagation != "" {
		return false, "linux.rootfsPropagation is set"
	}
	rootPath := spec.Root.Path
	if !filepath.IsAbs(rootPath) {
		rootPath = filepath.Join(bundle, rootPath)
	}
	if filepath.Clean(rootPath) == "/" {
		return false, "the root is the host's /"
	}
	for _, sm := range spec.Mounts {
		switch sm.Type {
		case "cgroup", "cgroup2":
			return false, "a cgroup mount"
		}
		if len(sm.UIDMappings) > 0 || len(sm.GIDMappings) > 0 {
			return false, "an idmapped mount"
		}
		mo, err := parseOptions(sm.Type, sm.Options)
		if err != nil || mo.idmap {
			return false, "an idmapped or invalid mount"
		}
	}
	return true, ""
}

// PrepareDetached clones, in the host's mount namespace, what a setup from
// the template mounts from the host: the rootfs (recursively, made rslave
// as prepareRoot makes "/", the mounts below it read-only with
// root.readonly) and every bind mount's source, as detached trees. Give
// the result to SetupOptions as Options.Detached.
func PrepareDetached(spec *specs.Spec, bundle string) (_ *Prepared, err error) {
	if ok, why := FromTemplate(spec, bundle); !ok {
		return nil, fmt.Errorf("rootfs: not from the mount namespace template: %s", why)
	}
	p := &Prepared{Binds: map[int]*os.File{}, template: true}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.Binds, err = detachBinds(spec, bundle, nil); err != nil {
		return nil, err
	}
	rootPath := spec.Root.Path
	if !filepath.IsAbs(rootPath) {
		rootPath = filepath.Join(bundle, rootPath)
	}
	if p.Root, err = detachedTree(rootPath, true, nil, false); err != nil {
		return nil, fmt.Errorf("rootfs: root.path %s: %w", rootPath, err)
	}
	if err := checkType(p.Root, unix.S_IFDIR); err != nil {
		return nil, fmt.Errorf("rootfs: root.path %s: %w", rootPath, err)
	}
	// As "/" is made rslave before the rootfs is bound (prepareRoot): the
	// host's mounts propagate in, none of the container's out.
	if err := setPropagation(p.Root, unix.MS_SLAVE|unix.MS_REC); err != nil {
		return nil, fmt.Errorf("rootfs: make the rootfs rslave: %w", err)
	}
	if spec.Root.Readonly {
		// readonlyBelow for a detached tree, whose mounts
		// /proc/self/mountinfo does not list: all of it read-only,
		// then the top writable again until Finalize, once the mount
		// points it lacks are made.
		sfs, err := fstatfs(int(p.Root.Fd()))
		if err != nil {
			return nil, err
		}
		if err := setAttr(p.Root, "", unix.MOUNT_ATTR_RDONLY, 0, true); err != nil {
			return nil, fmt.Errorf("rootfs: make the mounts below the read-only root read-only: %w", err)
		}
		if sfs.Flags&unix.ST_RDONLY == 0 {
			if err := setAttr(p.Root, "", 0, unix.MOUNT_ATTR_RDONLY, false); err != nil {
				return nil, fmt.Errorf("rootfs: make the mounts below the read-only root read-only: %w", err)
			}
		}
	}
	return p, nil
}

// attachRoot attaches the detached rootfs over "/" of the mount namespace
// (a copy of the template) this thread is in.
func attachRoot(root *os.File) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs("/", &sfs); err != nil {
		return sysErr("statfs /", err)
	}
	if sfs.Type != unix.TMPFS_MAGIC || sfs.Flags&unix.ST_RDONLY == 0 {
		return errors.New("this thread's root is not the mount namespace template's read-only tmpfs: it did not join the container's mount namespace")
	}
	err := sys.IgnoringEINTR(func() error {
		return unix.MoveMount(int(root.Fd()), "", unix.AT_FDCWD, "/", unix.MOVE_MOUNT_F_EMPTY_PATH)
	})
	if err != nil {
		return sysErr("move_mount the rootfs onto /", err)
	}
	return nil
}

// chrootInto makes root (attached over "/") this thread's root and cwd.
func chrootInto(root *os.File) error {
	if err := unix.Fchdir(int(root.Fd())); err != nil {
		return sysErr("fchdir to the new root", err)
	}
	if err := unix.Chroot("."); err != nil {
		return sysErr("chroot", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return sysErr("chdir /", err)
	}
	return nil
}
