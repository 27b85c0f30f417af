//go:build linux

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/sys"
)

// Setup prepares the container's root filesystem from spec and pivots into
// it: Prepare, then Finalize. bundle is the bundle directory (spec.Root.Path
// and relative bind sources are relative to it).
//
// A caller that writes sysctls must not use Setup when spec.Linux.Sysctl is
// set, because Finalize makes /proc/sys read-only when it is listed in
// readonlyPaths (as it usually is): call Prepare, write the sysctls, then
// Finalize.
func Setup(spec *specs.Spec, bundle string) error {
	return SetupWith(spec, bundle, nil)
}

// SetupWith is Setup calling beforeCgroup (when not nil) right before the
// first cgroup filesystem is mounted, for a caller that is placed in its
// cgroup (and unshares its cgroup namespace) while the mounts before it
// are made: a cgroup mount shows the cgroup the process is in.
func SetupWith(spec *specs.Spec, bundle string, beforeCgroup func() error) error {
	if err := prepare(spec, bundle, beforeCgroup, nil); err != nil {
		return err
	}
	return Finalize(spec)
}

// Options are the caller's parts of SetupOptions.
type Options struct {
	// BeforeCgroup, when set, runs right before the first cgroup
	// filesystem is mounted (see SetupWith).
	BeforeCgroup func() error
	// ProcContext, when set, gives the filesystem context (an fsopen fd,
	// which the mount closes) of each procfs the spec mounts, in order. A
	// procfs shows the PID namespace of the process that opened its
	// context, so a caller that sets up the mounts of a container from a
	// thread of its own (not in the container's PID namespace) has the
	// container's init open them. It needs the new mount API: a kernel
	// without fsopen fails the mount.
	ProcContext func() (int, error)
	// Cgroups, when set, gives the cgroups of the container's init by
	// hierarchy (proc.Cgroups of its PID), for a caller that is not the
	// init itself: a cgroup mount without a cgroup namespace binds the
	// init's cgroup directories. Default: this process's.
	Cgroups func() (map[string]string, error)
	// Detached, when set, is what PrepareDetached cloned from the host
	// for a caller in a mount namespace made from the template
	// (MakeTemplate): the rootfs is attached over "/" and chrooted
	// into, not pivoted into. SetupOptions closes nothing of it.
	Detached *Prepared
}

// SetupOptions is SetupWith with the caller's parts in o.
func SetupOptions(spec *specs.Spec, bundle string, o Options) error {
	if o.ProcContext != nil && legacyMountAPI {
		return errors.New("rootfs: a procfs context was given, and the kernel has no fsopen")
	}
	if err := prepareWith(spec, bundle, o, o.Detached); err != nil {
		return err
	}
	return Finalize(spec)
}

// SetupPrepared is SetupWith for an init in a user namespace, with the
// rootfs and bind mounts the runtime made outside it (PrepareOutside).
func SetupPrepared(spec *specs.Spec, bundle string, beforeCgroup func() error, pre *Prepared) error {
	if err := prepare(spec, bundle, beforeCgroup, pre); err != nil {
		return err
	}
	return Finalize(spec)
}

// Prepare does everything up to and including pivot_root: the propagation
// of "/", the bind of the rootfs onto itself, the spec's mounts in order
// (plus a tmpfs /dev, /dev/pts and /dev/shm where the spec has none and
// does not bind /dev), the device nodes and /dev symlinks, pivot_root into
// the rootfs with the old root detached, and linux.rootfsPropagation.
// When it returns the process's root and cwd are the container's "/".
//
// It must run as root in the container's new mount namespace, on a locked
// OS thread.
func Prepare(spec *specs.Spec, bundle string) error {
	return prepare(spec, bundle, nil, nil)
}

func prepare(spec *specs.Spec, bundle string, beforeCgroup func() error, pre *Prepared) error {
	return prepareWith(spec, bundle, Options{BeforeCgroup: beforeCgroup}, pre)
}

func prepareWith(spec *specs.Spec, bundle string, o Options, pre *Prepared) error {
	if spec == nil || spec.Root == nil || spec.Root.Path == "" {
		return errors.New("rootfs: spec has no root.path")
	}
	rootPath := spec.Root.Path
	if !filepath.IsAbs(rootPath) {
		rootPath = filepath.Join(bundle, rootPath)
	}
	linux := spec.Linux
	if linux == nil {
		linux = &specs.Linux{}
	}
	prop, err := parsePropagation(linux.RootfsPropagation)
	if err != nil {
		return fmt.Errorf("rootfs: linux.rootfsPropagation: %w", err)
	}
	var root *os.File
	template := pre != nil && pre.template
	switch {
	case template:
		if prop != 0 {
			return errors.New("rootfs: linux.rootfsPropagation cannot be set up from the mount namespace template")
		}
		if err := attachRoot(pre.Root); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		root = pre.Root // the caller's to close
	case pre != nil && pre.Root != nil:
		root = pre.Root // made by the runtime: PrepareOutside
		defer root.Close()
	default:
		if root, err = prepareRoot(spec, rootPath, nil); err != nil {
			return err
		}
		defer root.Close()
	}

	m := &mounter{spec: spec, linux: linux, bundle: bundle, root: root, beforeCgroup: o.BeforeCgroup, procContext: o.ProcContext, cgroups: o.Cgroups}
	if pre != nil {
		m.binds = pre.Binds
	}
	defer func() {
		if m.devMnt != nil {
			m.devMnt.Close()
		}
	}()
	if err := m.mountAll(); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if m.setupDev {
		if err := m.populateDev(); err != nil {
			return fmt.Errorf("rootfs: /dev: %w", err)
		}
	}
	if template {
		if err := chrootInto(root); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		return nil
	}
	if err := pivotRoot(root); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	// runc applies an explicit rootfsPropagation to the new "/" after
	// pivot_root, where it affects the container's mounts only.
	if prop != 0 {
		if err := mount("", "/", "", prop, ""); err != nil {
			return fmt.Errorf("rootfs: set propagation of the new /: %w", err)
		}
	}
	return nil
}

// prepareRoot is runc's prepareRoot: it makes "/" rslave (or what
// linux.rootfsPropagation says) so that nothing mounted propagates to the
// host, makes the rootfs's parent mount private if it is shared
// (pivot_root refuses a shared parent), then binds the rootfs onto itself
// so that it is a mount point, idmapped with userns when not nil, and
// returns an O_PATH fd of that mount.
func prepareRoot(spec *specs.Spec, rootPath string, userns *os.File) (*os.File, error) {
	var prop uintptr
	if spec.Linux != nil {
		var err error
		if prop, err = parsePropagation(spec.Linux.RootfsPropagation); err != nil {
			return nil, fmt.Errorf("rootfs: linux.rootfsPropagation: %w", err)
		}
	}
	if prop == 0 {
		prop = unix.MS_SLAVE | unix.MS_REC
	}
	if err := mount("", "/", "", prop, ""); err != nil {
		return nil, fmt.Errorf("rootfs: set propagation of /: %w", err)
	}
	// After a recursive slave, private or unbindable no mount of the
	// namespace is shared: the rootfs's parent mount is not, and
	// /proc/self/mountinfo need not be read to see it (0.2 ms a read on
	// a 2-core VM).
	if prop&unix.MS_REC == 0 || prop&(unix.MS_SLAVE|unix.MS_PRIVATE|unix.MS_UNBINDABLE) == 0 {
		if err := parentMountPrivate(rootPath); err != nil {
			return nil, fmt.Errorf("rootfs: %w", err)
		}
	}
	var root *os.File
	var err error
	if userns != nil {
		root, err = bindRootfsIDMapped(rootPath, userns)
	} else {
		root, err = bindRootfs(rootPath)
	}
	if err != nil {
		return nil, fmt.Errorf("rootfs: bind %s onto itself: %w", rootPath, err)
	}
	if spec.Root.Readonly {
		// The bind is recursive: the mounts below the rootfs (the host's
		// /run, /tmp, /dev/shm… when the root is "/") came with it, each
		// as writable as on the host. A read-only root is read-only all
		// the way down. The host's own root is made read-only before the
		// spec's mounts, so that no mount point is ever created on it;
		// any other root only at Finalize, once the runtime has made
		// the mount points it lacks.
		if err := readonlyBelow(root, rootPath == "/"); err != nil {
			root.Close()
			return nil, fmt.Errorf("rootfs: make the mounts below the read-only root read-only: %w", err)
		}
	}
	return root, nil
}

// bindRootfsIDMapped is bindRootfs with the clone idmapped (every mount of
// the tree) before it is attached.
func bindRootfsIDMapped(rootPath string, userns *os.File) (*os.File, error) {
	f, err := detachedTree(rootPath, true, userns, true)
	if err != nil {
		return nil, fmt.Errorf("root.path %s: %w", rootPath, err)
	}
	err = sys.IgnoringEINTR(func() error {
		return unix.MoveMount(int(f.Fd()), "", unix.AT_FDCWD, rootPath, unix.MOVE_MOUNT_F_EMPTY_PATH)
	})
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "move_mount", Path: rootPath, Err: err}
	}
	if err := checkType(f, unix.S_IFDIR); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Finalize runs after Prepare, inside the new root: linux.readonlyPaths
// (bound onto themselves and made read-only, recursively),
// linux.maskedPaths (the container's /dev/null, checked to be the char
// device 1:3, bound over files; an empty read-only tmpfs over
// directories; paths that do not exist are skipped) and root.readonly
// (the "/" mount made read-only, its other flags kept).
func Finalize(spec *specs.Spec) error {
	root, err := os.OpenFile("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer root.Close()
	if spec.Linux != nil {
		for _, p := range spec.Linux.ReadonlyPaths {
			if err := readonlyPath(root, p); err != nil {
				return fmt.Errorf("rootfs: readonly path %s: %w", p, err)
			}
		}
		if err := maskPaths(root, spec.Linux.MaskedPaths); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	if spec.Root != nil && spec.Root.Readonly {
		if err := setAttr(root, "/", unix.MOUNT_ATTR_RDONLY, 0, false); err != nil {
			return fmt.Errorf("rootfs: make / read-only: %w", err)
		}
	}
	return nil
}

// Chdir changes the working directory to cwd inside the current root
// (after Setup: the container's), creating it as runc does when it is
// missing, resolving symlinks inside the root and refusing magic links.
// It then checks that the result really is under the root: getcwd(2)
// fails with ENOENT for a directory outside it (CVE-2024-21626).
func Chdir(cwd string) error {
	root, err := os.OpenFile("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer root.Close()
	dir, err := MkdirAllInRoot(root, cwd, 0o755)
	if err != nil {
		return fmt.Errorf("rootfs: cwd %s: %w", cwd, err)
	}
	defer dir.Close()
	if err := unix.Fchdir(int(dir.Fd())); err != nil {
		return fmt.Errorf("rootfs: cwd %s: %w", cwd, sysErr("fchdir", err))
	}
	wd, err := unix.Getwd()
	if err != nil || !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("rootfs: cwd %s is outside the root (getcwd: %q, %v)", cwd, wd, err)
	}
	return nil
}

func bindRootfs(rootPath string) (*os.File, error) {
	if !legacyMountAPI {
		var tfd int
		err := sys.IgnoringEINTR(func() (err error) {
			tfd, err = unix.OpenTree(unix.AT_FDCWD, rootPath, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
			return err
		})
		if err == nil {
			err = sys.IgnoringEINTR(func() error {
				return unix.MoveMount(tfd, "", unix.AT_FDCWD, rootPath, unix.MOVE_MOUNT_F_EMPTY_PATH)
			})
			if err != nil {
				sys.CloseFd(tfd)
				return nil, &os.PathError{Op: "move_mount", Path: rootPath, Err: err}
			}
			f := os.NewFile(uintptr(tfd), rootPath)
			if err := checkType(f, unix.S_IFDIR); err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return nil, &os.PathError{Op: "open_tree", Path: rootPath, Err: err}
		}
		legacyMountAPI = true
	}
	if err := mount(rootPath, rootPath, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return nil, err
	}
	return os.OpenFile(rootPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// readonlyBelow makes every mount below root (a recursive bind) read-only,
// recursively, and with self the root mount too. Flags not named keep
// their value.
func readonlyBelow(root *os.File, self bool) error {
	if self {
		return setAttr(root, "", unix.MOUNT_ATTR_RDONLY, 0, true)
	}
	if none, known := noChildMounts(root); known && none {
		return nil
	}
	var stx unix.Statx_t
	if err := unix.Statx(int(root.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err != nil {
		return sysErr("statx", err)
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return errors.New("the kernel does not report mount IDs (statx STATX_MNT_ID, Linux 5.8)")
	}
	ms, err := proc.Mounts(func(m *proc.Mount) bool { return uint64(m.Parent) == stx.Mnt_id && m.ID != m.Parent })
	if err != nil {
		return err
	}
	var children []string
	for _, m := range ms {
		children = append(children, m.Mountpoint)
	}
	for _, c := range children {
		mnt, err := os.OpenFile(c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = setAttr(mnt, c, unix.MOUNT_ATTR_RDONLY, 0, true)
		mnt.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// parentMountPrivate makes the mount that holds path private if it is
// shared: pivot_root(2) fails with EINVAL when the new root's parent mount
// is shared, and a bind under a shared mount would propagate to the host.
func parentMountPrivate(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return err
	}
	ms, err := proc.Mounts(func(m *proc.Mount) bool { return isUnder(real, m.Mountpoint) })
	if err != nil {
		return err
	}
	best, shared := "", false
	for _, m := range ms {
		if len(m.Mountpoint) >= len(best) {
			best, shared = m.Mountpoint, m.Shared()
		}
	}
	if !shared {
		return nil
	}
	return mount("", best, "", unix.MS_PRIVATE, "")
}

// noChildMounts reports whether no mount is mounted below the mount of
// fd, where the kernel can tell without /proc/self/mountinfo (listmount,
// Linux 6.8: one call, against a read of mountinfo that costs 0.2 ms on a
// 2-core VM). known is false where it cannot.
func noChildMounts(fd *os.File) (none, known bool) {
	var stx unix.Statx_t
	if err := unix.Statx(int(fd.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID_UNIQUE, &stx); err != nil || stx.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return false, false
	}
	// struct mnt_id_req (MNT_ID_REQ_SIZE_VER0): size, spare, mnt_id,
	// param (0: from the first child on).
	req := struct {
		size, spare uint32
		mntID       uint64
		param       uint64
	}{size: unix.MNT_ID_REQ_SIZE_VER0, mntID: stx.Mnt_id}
	var ids [1]uint64
	n, _, errno := unix.Syscall6(unix.SYS_LISTMOUNT, uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&ids[0])), 1, 0, 0, 0)
	if errno != 0 {
		return false, false
	}
	return n == 0, true
}

func isUnder(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// pivotRoot makes root the process's "/" with runc's pivot_root(".", ".")
// trick: no directory for the old root is needed; the old root ends up
// mounted on top of the new one, is made rslave so that unmounting it
// cannot propagate to the host, and is detached.
//
// runc makes the old root rslave with mount("", ".", MS_SLAVE|MS_REC), but
// mount(2) does not cross the old root stacked on "." and so changes the
// new root's whole tree too, which undoes every mount's own propagation
// option. Here the old root is reached through an fd of the host's "/"
// opened before pivot_root and changed with mount_setattr, so that only
// the old root's tree becomes rslave; without mount_setattr this falls back
// to runc's call.
func pivotRoot(root *os.File) error {
	oldRoot, err := os.OpenFile("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer oldRoot.Close()
	if err := unix.Fchdir(int(root.Fd())); err != nil {
		return sysErr("fchdir to the new root", err)
	}
	if err := sys.IgnoringEINTR(func() error { return unix.PivotRoot(".", ".") }); err != nil {
		return sysErr("pivot_root", err)
	}
	if err := oldRootSlave(oldRoot); err != nil {
		return fmt.Errorf("make the old root rslave: %w", err)
	}
	if err := sys.IgnoringEINTR(func() error { return unix.Unmount(".", unix.MNT_DETACH) }); err != nil {
		return sysErr("detach the old root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return sysErr("chdir /", err)
	}
	return nil
}

func oldRootSlave(oldRoot *os.File) error {
	if !noMountSetattr {
		attr := unix.MountAttr{Propagation: unix.MS_SLAVE}
		err := sys.IgnoringEINTR(func() error {
			return unix.MountSetattr(int(oldRoot.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr)
		})
		if err == nil || !errors.Is(err, unix.ENOSYS) {
			return sysErr("mount_setattr", err)
		}
		noMountSetattr = true
	}
	return mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, "")
}
