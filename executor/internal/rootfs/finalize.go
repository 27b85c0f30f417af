//go:build linux

package rootfs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// readonlyPath binds p onto itself, with the mounts below it, and makes
// the whole tree read-only. A missing path is skipped.
func readonlyPath(root *os.File, p string) error {
	f, err := OpenInRoot(root, p)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	mnt, err := bindMount(f, target{root: root, path: p, fd: f}, true)
	if err != nil {
		return err
	}
	defer mnt.Close()
	return setAttr(mnt, "", unix.MOUNT_ATTR_RDONLY, 0, true)
}

// maskPaths hides each path: the container's /dev/null bound over a file
// (after checking, on the fd that is bound, that it is the char device
// 1:3 and not, say, a symlink to a host file), an empty read-only tmpfs
// over a directory. Missing paths are skipped.
func maskPaths(root *os.File, paths []string) error {
	var null *os.File
	defer func() {
		if null != nil {
			null.Close()
		}
	}()
	for _, p := range paths {
		f, err := OpenInRoot(root, p)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("masked path %s: %w", p, err)
		}
		err = maskOne(root, p, f, &null)
		f.Close()
		if err != nil {
			return fmt.Errorf("masked path %s: %w", p, err)
		}
	}
	return nil
}

func maskOne(root *os.File, p string, f *os.File, null **os.File) error {
	st, err := sys.Fstat(int(f.Fd()))
	if err != nil {
		return err
	}
	tgt := target{root: root, path: p, fd: f}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		mnt, err := newMount("tmpfs", "tmpfs", mountOptions{}, unix.MOUNT_ATTR_RDONLY, tgt)
		if err != nil {
			return err
		}
		return mnt.Close()
	}
	if *null == nil {
		n, err := openDevNull(root)
		if err != nil {
			return err
		}
		*null = n
	}
	mnt, err := bindMount(*null, tgt, false)
	if err != nil {
		return err
	}
	return mnt.Close()
}

// openDevNull opens the container's /dev/null inside root and checks that
// it is the character device 1:3.
func openDevNull(root *os.File) (*os.File, error) {
	f, err := OpenInRoot(root, "/dev/null")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDevNull, err)
	}
	st, err := sys.Fstat(int(f.Fd()))
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		f.Close()
		return nil, fmt.Errorf("%w: it is a %s %d:%d", ErrInvalidDevNull, sys.TypeName(st.Mode), unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return f, nil
}
