//go:build linux

package layer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

const (
	// maxLayers is overlayfs's limit on lower layers (OVL_MAX_STACK).
	maxLayers = 500
	// maxFsconfigString is the longest value fsconfig(FSCONFIG_SET_STRING)
	// takes (strndup_user(value, 256) with its NUL); longer paths are
	// passed as /proc/self/fd/N.
	maxFsconfigString = 255
	// mountDataMax is the size of the one page mount(2) copies options from.
	mountDataMax = 4096
)

// noLowerdirPlus is set once the kernel refused overlay's "lowerdir+"
// parameter (before Linux 6.8); tests set it to exercise the mount(2)
// fallback.
var noLowerdirPlus atomic.Bool

// Mount mounts an image root filesystem at target, an existing empty
// directory, from layer directories given lowest first.
//
// With upper == "" the mount is read-only: an overlay of the layers with
// MOUNT_ATTR_RDONLY, or a read-only bind mount of the layer when there is
// just one (overlay needs two lower layers without an upper). With upper
// and work, existing empty directories on one filesystem, it is a writable
// overlay; changes land in upper. An empty upper first takes the mode and
// owner of the highest layer's root, which overlayfs shows as "/".
//
// Overlay mounts use the new mount API with one "lowerdir+" parameter per
// layer (Linux 6.8+), so the number of layers and the length of their
// paths are not limited by the one page of options mount(2) takes; paths
// longer than fsconfig's 255 bytes are passed as /proc/self/fd/N of an fd
// opened on them. On older kernels (and wherever "lowerdir+" is refused as
// an unknown parameter) it falls back to mount(2) with every directory
// given as the short number of an fd opened on it: the mount runs on a
// locked OS thread that has its own working directory (unshare(CLONE_FS))
// set to /proc/self/fd, so "lowerdir=12:11:10" names those fds; the
// thread ends with the call, and the process's working directory is never
// changed. There mountinfo shows those numbers rather than the paths.
// Overlay options are the kernel's defaults.
//
// When overlayfs is missing from the kernel or refuses the mount, the
// error wraps ErrOverlayUnusable ("overlayfs is not usable here: ...").
func Mount(target string, layers []string, upper, work string) error {
	if len(layers) == 0 {
		return fmt.Errorf("unable to mount an image at %s: no layers", target)
	}
	if len(layers) > maxLayers {
		return fmt.Errorf("unable to mount an image at %s: %d layers, overlayfs stacks at most %d", target, len(layers), maxLayers)
	}
	if (upper == "") != (work == "") {
		return fmt.Errorf("unable to mount an image at %s: upper (%q) and work (%q) go together", target, upper, work)
	}
	tfd, err := sys.Openat(unix.AT_FDCWD, target, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("unable to open mount target: %w", err)
	}
	defer sys.CloseFd(tfd)

	dirs := make([]dirFd, 0, len(layers)+2)
	defer func() {
		for _, d := range dirs {
			sys.CloseFd(d.fd)
		}
	}()
	open := func(what, p string) (dirFd, error) {
		fd, err := sys.Openat(unix.AT_FDCWD, p, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return dirFd{-1, p}, fmt.Errorf("unable to mount an image at %s: %s: %w", target, what, err)
		}
		d := dirFd{fd, p}
		dirs = append(dirs, d)
		return d, nil
	}
	// Highest layer first: overlay's first lower layer is the top one.
	lowers := make([]dirFd, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		d, err := open(fmt.Sprintf("layer %d", i), layers[i])
		if err != nil {
			return err
		}
		lowers = append(lowers, d)
	}
	if upper == "" && len(layers) == 1 {
		if err := bindReadOnly(lowers[0], tfd, target); err != nil {
			return fmt.Errorf("unable to bind-mount layer %s read-only at %s: %w", layers[0], target, err)
		}
		return nil
	}
	var up, wk dirFd
	if upper != "" {
		if up, err = open("upper", upper); err != nil {
			return err
		}
		if wk, err = open("work", work); err != nil {
			return err
		}
		if err := matchRoot(upper, lowers[0]); err != nil {
			return fmt.Errorf("unable to mount an image at %s: %w", target, err)
		}
	}
	if err := mountOverlay(lowers, up, wk, tfd, target); err != nil {
		return fmt.Errorf("unable to mount an overlay of %d layers at %s: %w", len(layers), target, err)
	}
	return nil
}

// matchRoot gives an empty upper directory the mode and owner of the
// highest layer's root, as docker and containerd create theirs: overlayfs
// shows the upper root's attributes as the container's "/", and a 0700
// upper would make "/" unusable for non-root users. An upper that is not
// empty (a container's existing changes) is left as it is.
func matchRoot(upper string, top dirFd) error {
	return matchRootMapped(upper, top, func(uid, gid uint32) (int, int) { return int(uid), int(gid) })
}

// dirFd is a directory given to Mount: its path and an O_PATH fd on it.
type dirFd struct {
	fd   int
	path string
}

// fsconfigPath is how d is named to fsconfig: its path, or /proc/self/fd/N
// when the path is too long for fsconfig.
func (d dirFd) fsconfigPath() (string, error) {
	if len(d.path) <= maxFsconfigString {
		return d.path, nil
	}
	return procFdPath(d.fd)
}

func moveMount(from, to int, target string) error {
	err := sys.IgnoringEINTR(func() error {
		return unix.MoveMount(from, "", to, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	})
	return pathErr("move_mount", target, err)
}

// bindReadOnly bind-mounts src (not the mounts below it) read-only onto
// tfd: open_tree(OPEN_TREE_CLONE), mount_setattr(MOUNT_ATTR_RDONLY) on the
// detached copy, move_mount. Without the new mount API (ENOSYS) it uses
// mount(2): a bind, then a read-only remount.
func bindReadOnly(src dirFd, tfd int, target string) error {
	var tree int
	err := sys.IgnoringEINTR(func() (err error) {
		tree, err = unix.OpenTree(src.fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
		return err
	})
	if err == nil {
		defer sys.CloseFd(tree)
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		err := sys.IgnoringEINTR(func() error { return unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr) })
		if err == nil {
			return moveMount(tree, tfd, target)
		}
		if !errors.Is(err, unix.ENOSYS) {
			return pathErr("mount_setattr ro", src.path, err)
		}
	} else if !errors.Is(err, unix.ENOSYS) {
		return pathErr("open_tree", src.path, err)
	}
	srcPath, err := procFdPath(src.fd)
	if err != nil {
		return err
	}
	dstPath, err := procFdPath(tfd)
	if err != nil {
		return err
	}
	if err := sys.IgnoringEINTR(func() error { return unix.Mount(srcPath, dstPath, "", unix.MS_BIND, "") }); err != nil {
		return pathErr("mount bind "+src.path, target, err)
	}
	err = sys.IgnoringEINTR(func() error {
		return unix.Mount("", dstPath, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
	})
	if err != nil {
		return errors.Join(pathErr("remount ro", target, err), Unmount(target))
	}
	return nil
}

func mountOverlay(lowers []dirFd, up, wk dirFd, tfd int, target string) error {
	if noLowerdirPlus.Load() || !kernelAtLeast(6, 8) {
		return mountOverlayClassic(lowers, up, wk, target)
	}
	var fsfd int
	err := sys.IgnoringEINTR(func() (err error) {
		fsfd, err = unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
		return err
	})
	if errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("%w: the kernel has no overlay filesystem (not in /proc/filesystems and not loadable)", ErrOverlayUnusable)
	}
	if errors.Is(err, unix.ENOSYS) {
		noLowerdirPlus.Store(true)
		return mountOverlayClassic(lowers, up, wk, target)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOverlayUnusable, os.NewSyscallError("fsopen overlay", err))
	}
	defer sys.CloseFd(fsfd)
	refused := func(what string, err error) error {
		if msg := sys.FsLog(fsfd); msg != "" {
			return fmt.Errorf("%w: %s: %w (kernel: %s)", ErrOverlayUnusable, what, err, msg)
		}
		return fmt.Errorf("%w: %s: %w", ErrOverlayUnusable, what, err)
	}
	set := func(key string, d dirFd) error {
		p, err := d.fsconfigPath()
		if err != nil {
			return err
		}
		return sys.IgnoringEINTR(func() error { return unix.FsconfigSetString(fsfd, key, p) })
	}
	// "source" is what mountinfo shows as the mount source, as mount(2)
	// callers conventionally pass "overlay".
	if err := unix.FsconfigSetString(fsfd, "source", "overlay"); err != nil {
		return refused("fsconfig source=overlay", err)
	}
	for i, d := range lowers {
		err := set("lowerdir+", d)
		if i == 0 && errors.Is(err, unix.EINVAL) {
			if msg := sys.FsLog(fsfd); strings.Contains(msg, "Unknown parameter") {
				noLowerdirPlus.Store(true)
				return mountOverlayClassic(lowers, up, wk, target)
			}
		}
		if err != nil {
			return refused("fsconfig lowerdir+="+d.path, err)
		}
	}
	if up.path != "" {
		if err := set("upperdir", up); err != nil {
			return refused("fsconfig upperdir="+up.path, err)
		}
		if err := set("workdir", wk); err != nil {
			return refused("fsconfig workdir="+wk.path, err)
		}
	}
	if err := sys.IgnoringEINTR(func() error { return unix.FsconfigCreate(fsfd) }); err != nil {
		return refused("fsconfig create", err)
	}
	var attrs int
	if up.path == "" {
		attrs = unix.MOUNT_ATTR_RDONLY
	}
	var mfd int
	err = sys.IgnoringEINTR(func() (err error) {
		mfd, err = unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
		return err
	})
	if err != nil {
		return refused("fsmount", err)
	}
	defer sys.CloseFd(mfd)
	return moveMount(mfd, tfd, target)
}

// mountOverlayClassic mounts the overlay with mount(2), naming every
// directory by its fd number relative to /proc/self/fd, the working
// directory of a locked OS thread that unshared its filesystem context
// (CLONE_FS) for it. The goroutine returns without unlocking, so the
// runtime ends that thread.
func mountOverlayClassic(lowers []dirFd, up, wk dirFd, target string) error {
	nums := make([]string, len(lowers))
	for i, d := range lowers {
		nums[i] = strconv.Itoa(d.fd)
	}
	data := "lowerdir=" + strings.Join(nums, ":")
	if up.path != "" {
		data += ",upperdir=" + strconv.Itoa(up.fd) + ",workdir=" + strconv.Itoa(wk.fd)
	}
	if len(data) >= mountDataMax {
		return fmt.Errorf("%w: the overlay options for %d layers exceed mount(2)'s page (%d bytes) and this kernel lacks lowerdir+ (Linux 6.8)",
			ErrOverlayUnusable, len(lowers), len(data))
	}
	var flags uintptr
	if up.path == "" {
		flags = unix.MS_RDONLY
	}
	// The target is named by its absolute path: relative paths would
	// resolve against /proc/self/fd on that thread.
	abs := target
	if !strings.HasPrefix(abs, "/") {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("unable to make %s absolute: %w", target, err)
		}
		abs = wd + "/" + target
	}
	// Check that /proc is a procfs before trusting /proc/self/fd.
	if err := checkProcfs(); err != nil {
		return err
	}
	var err error
	// On a thread that ends afterwards: its cwd is not the process's.
	sys.OnOwnThread(func() {
		if err = unix.Unshare(unix.CLONE_FS); err != nil {
			err = os.NewSyscallError("unshare(CLONE_FS)", err)
			return
		}
		if err = unix.Chdir("/proc/self/fd"); err != nil {
			err = pathErr("chdir", "/proc/self/fd", err)
			return
		}
		err = sys.IgnoringEINTR(func() error { return unix.Mount("overlay", abs, "overlay", flags, data) })
	})
	if err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) {
			return fmt.Errorf("%w: mount(2) %s: %w (the kernel log says why)", ErrOverlayUnusable, data, pathErr("mount overlay", target, err))
		}
		return err
	}
	return nil
}

// kernelAtLeast reports whether the running kernel's release is at least
// major.minor. An unparsable release counts as new enough: the mount then
// finds out from the kernel's answer.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return true
	}
	rel := unix.ByteSliceToString(u.Release[:])
	maj, rest, _ := strings.Cut(rel, ".")
	mi := strings.FieldsFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	a, err1 := strconv.Atoi(maj)
	if err1 != nil || len(mi) == 0 {
		return true
	}
	b, err2 := strconv.Atoi(mi[0])
	if err2 != nil {
		return true
	}
	return a > major || (a == major && b >= minor)
}

// Unmount unmounts target (MNT_DETACH) until nothing is mounted there: a
// target that is not a mount point, or does not exist, is not an error.
func Unmount(target string) error {
	const maxStacked = 64
	for i := 0; i < maxStacked; i++ {
		m, err := Mounted(target)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unable to unmount %s: %w", target, err)
		}
		if !m {
			return nil
		}
		err = sys.IgnoringEINTR(func() error { return unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW) })
		if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: unmounted meanwhile
			return fmt.Errorf("unable to unmount %s: %w", target, pathErr("umount2", target, err))
		}
	}
	return fmt.Errorf("unable to unmount %s: still a mount point after %d unmounts", target, maxStacked)
}

// Mounted says whether target is a mount point: statx's
// STATX_ATTR_MOUNT_ROOT (Linux 5.8+), else whether its mount ID (or
// device) differs from its parent's. A symlink is never followed, so never
// a mount point.
func Mounted(target string) (bool, error) {
	var stx unix.Statx_t
	const flags = unix.AT_SYMLINK_NOFOLLOW | unix.AT_NO_AUTOMOUNT
	statx := func(p string) error {
		return pathErr("statx", p, sys.IgnoringEINTR(func() error {
			return unix.Statx(unix.AT_FDCWD, p, flags, unix.STATX_BASIC_STATS|unix.STATX_MNT_ID, &stx)
		}))
	}
	if err := statx(target); err != nil {
		return false, err
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	hasMntID := stx.Mask&unix.STATX_MNT_ID != 0
	id, devMaj, devMin := stx.Mnt_id, stx.Dev_major, stx.Dev_minor
	if err := statx(strings.TrimSuffix(target, "/") + "/.."); err != nil {
		return false, err
	}
	if hasMntID && stx.Mask&unix.STATX_MNT_ID != 0 {
		return id != stx.Mnt_id, nil
	}
	return devMaj != stx.Dev_major || devMin != stx.Dev_minor, nil
}
