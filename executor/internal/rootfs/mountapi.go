//go:build linux

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// Every mount this package makes goes through the functions in this file.
// They mount onto an already opened and verified O_PATH file descriptor,
// never onto a path the kernel would walk again:
//
//   - with the new mount API (Linux >= 5.2, mount_setattr >= 5.12):
//     open_tree(OPEN_TREE_CLONE) / fsopen+fsmount, then
//     move_mount(MOVE_MOUNT_T_EMPTY_PATH) onto the target fd, and
//     mount_setattr on the new mount's fd;
//   - on older kernels with mount(2) on "/proc/self/fd/N" after checking
//     that /proc is a procfs.

// legacyMountAPI is set once open_tree/fsopen reported ENOSYS, and
// noMountSetattr once mount_setattr did. Tests set them to exercise the
// mount(2) path.
var (
	legacyMountAPI bool
	noMountSetattr bool
)

// target is where a mount goes: the verified O_PATH fd, and the root and
// in-root path it was resolved from, to find the new mount again where
// mount(2) gives no fd for it.
type target struct {
	root *os.File
	path string
	fd   *os.File
}

func (t target) reopen() (*os.File, error) { return OpenInRoot(t.root, t.path) }

// procFdPath returns "/proc/self/fd/N" for f after checking that /proc is
// the root of a procfs, so that the magic link really names f.
func procFdPath(f *os.File) (string, error) {
	pfd, err := sys.Openat(unix.AT_FDCWD, "/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer sys.CloseFd(pfd)
	sfs, err := fstatfs(pfd)
	if err != nil {
		return "", err
	}
	st, err := sys.Fstat(pfd)
	if err != nil {
		return "", err
	}
	const procRootIno = 1
	if sfs.Type != unix.PROC_SUPER_MAGIC || st.Ino != procRootIno {
		return "", fmt.Errorf("/proc: %w", ErrNotProcfs)
	}
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), nil
}

func moveMount(from int, to *os.File) error {
	err := sys.IgnoringEINTR(func() error {
		return unix.MoveMount(from, "", int(to.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	})
	if err != nil {
		return &os.PathError{Op: "move_mount", Path: to.Name(), Err: err}
	}
	return nil
}

// bindMount bind-mounts src (with every mount below it if recursive) onto
// dst and returns an fd of the new mount's root.
func bindMount(src *os.File, dst target, recursive bool) (*os.File, error) {
	if !legacyMountAPI {
		flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_EMPTY_PATH)
		if recursive {
			flags |= unix.AT_RECURSIVE
		}
		var tfd int
		err := sys.IgnoringEINTR(func() (err error) {
			tfd, err = unix.OpenTree(int(src.Fd()), "", flags)
			return err
		})
		if err == nil {
			if err := moveMount(tfd, dst.fd); err != nil {
				sys.CloseFd(tfd)
				return nil, err
			}
			return os.NewFile(uintptr(tfd), dst.path), nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return nil, &os.PathError{Op: "open_tree", Path: src.Name(), Err: err}
		}
		legacyMountAPI = true
	}
	srcPath, err := procFdPath(src)
	if err != nil {
		return nil, err
	}
	dstPath, err := procFdPath(dst.fd)
	if err != nil {
		return nil, err
	}
	flags := uintptr(unix.MS_BIND)
	if recursive {
		flags |= unix.MS_REC
	}
	if err := mount(srcPath, dstPath, "", flags, ""); err != nil {
		return nil, err
	}
	return dst.reopen()
}

// newMount mounts a new filesystem of type fstype on dst with the
// mount-point attributes attrs and returns an fd of its root.
func newMount(fstype, source string, mo mountOptions, attrs uint64, dst target) (*os.File, error) {
	if !legacyMountAPI {
		var fsfd int
		err := sys.IgnoringEINTR(func() (err error) {
			fsfd, err = unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
			return err
		})
		if err == nil {
			defer sys.CloseFd(fsfd)
			return fsmount(fsfd, fstype, source, mo, attrs, dst)
		}
		if !errors.Is(err, unix.ENOSYS) {
			return nil, sysErr("fsopen "+fstype, err)
		}
		legacyMountAPI = true
	}
	dstPath, err := procFdPath(dst.fd)
	if err != nil {
		return nil, err
	}
	if err := mount(source, dstPath, fstype, msFlags(attrs)|mo.msSB, strings.Join(mo.data, ",")); err != nil {
		return nil, err
	}
	return dst.reopen()
}

func fsmount(fsfd int, fstype, source string, mo mountOptions, attrs uint64, dst target) (*os.File, error) {
	fail := func(what string, err error) (*os.File, error) {
		if msg := sys.FsLog(fsfd); msg != "" {
			return nil, fmt.Errorf("%s %s: %w (%s)", what, fstype, err, msg)
		}
		return nil, fmt.Errorf("%s %s: %w", what, fstype, err)
	}
	if source != "" {
		if err := unix.FsconfigSetString(fsfd, "source", source); err != nil {
			return fail("fsconfig source="+source, err)
		}
	}
	for _, o := range append(append([]string(nil), mo.sbFlags...), mo.data...) {
		var err error
		if k, v, ok := strings.Cut(o, "="); ok {
			err = unix.FsconfigSetString(fsfd, k, v)
		} else {
			err = unix.FsconfigSetFlag(fsfd, o)
		}
		if err != nil {
			return fail("fsconfig "+o, err)
		}
	}
	if err := sys.IgnoringEINTR(func() error { return unix.FsconfigCreate(fsfd) }); err != nil {
		return fail("fsconfig create", err)
	}
	var mfd int
	err := sys.IgnoringEINTR(func() (err error) {
		mfd, err = unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(attrs))
		return err
	})
	if err != nil {
		return fail("fsmount", err)
	}
	if err := moveMount(mfd, dst.fd); err != nil {
		sys.CloseFd(mfd)
		return nil, err
	}
	return os.NewFile(uintptr(mfd), dst.path), nil
}

// setAttr sets and clears mount-point attributes (MOUNT_ATTR_*) of the
// mount whose root mnt is, on every mount below it too if recursive.
// Attributes not named stay as they are: in particular a read-only remount
// keeps nosuid/nodev/noexec, which the kernel refuses to clear on mounts
// it has locked. legacyPath, when not "", is the path mount(2) uses on
// kernels without mount_setattr (default: /proc/self/fd/N); there
// recursive changes apply to the top mount only.
func setAttr(mnt *os.File, legacyPath string, set, clr uint64, recursive bool) error {
	if set == 0 && clr == 0 {
		return nil
	}
	if !noMountSetattr {
		flags := uint(unix.AT_EMPTY_PATH)
		if recursive {
			flags |= unix.AT_RECURSIVE
		}
		attr := unix.MountAttr{Attr_set: set, Attr_clr: clr}
		err := sys.IgnoringEINTR(func() error { return unix.MountSetattr(int(mnt.Fd()), "", flags, &attr) })
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return &os.PathError{Op: fmt.Sprintf("mount_setattr set=%#x clr=%#x", set, clr), Path: mnt.Name(), Err: err}
		}
		noMountSetattr = true
	}
	sfs, err := fstatfs(int(mnt.Fd()))
	if err != nil {
		return err
	}
	cur := attrsFromStatfs(sfs.Flags)
	if clr&unix.MOUNT_ATTR__ATIME != 0 {
		cur &^= unix.MOUNT_ATTR__ATIME
	}
	want := (cur &^ clr) | set
	path := legacyPath
	if path == "" {
		if path, err = procFdPath(mnt); err != nil {
			return err
		}
	}
	return mount("", path, "", unix.MS_BIND|unix.MS_REMOUNT|msFlags(want), "")
}

// setPropagation changes the propagation type of the mount whose root mnt
// is (prop: MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE, with MS_REC
// for the whole tree below it).
func setPropagation(mnt *os.File, prop uintptr) error {
	if !noMountSetattr {
		flags := uint(unix.AT_EMPTY_PATH)
		if prop&unix.MS_REC != 0 {
			flags |= unix.AT_RECURSIVE
		}
		attr := unix.MountAttr{Propagation: uint64(prop &^ unix.MS_REC)}
		err := sys.IgnoringEINTR(func() error { return unix.MountSetattr(int(mnt.Fd()), "", flags, &attr) })
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return &os.PathError{Op: fmt.Sprintf("mount_setattr propagation=%#x", prop), Path: mnt.Name(), Err: err}
		}
		noMountSetattr = true
	}
	path, err := procFdPath(mnt)
	if err != nil {
		return err
	}
	return mount("", path, "", prop, "")
}
