package sys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// mountKey identifies the mount an open file is on: the mount ID where
// statx gives one (it tells bind mounts of one file system apart), else
// the device.
type mountKey struct{ id, dev uint64 }

func mountOf(fd int, path string) (mountKey, error) {
	var stx unix.Statx_t
	err := IgnoringEINTR(func() error {
		return unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx)
	})
	if err != nil {
		return mountKey{}, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	k := mountKey{dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor)}
	if stx.Mask&unix.STATX_MNT_ID != 0 {
		k.id = stx.Mnt_id
	}
	return k, nil
}

// ErrMountPoint is returned for a directory that is another mount: it is
// left in place.
var ErrMountPoint = errors.New("is a mount point; not removed")

// RemoveTree deletes path and everything under it, depth first, with
// *at calls relative to open directories: symlinks are removed, never
// followed, and a directory on another mount than path's parent is not
// entered (the removal fails with ErrMountPoint and the rest is still
// removed). A missing path is not an error.
func RemoveTree(path string) error {
	parent, base := filepath.Split(filepath.Clean(path))
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil // no parent, no path
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: parent, Err: err}
	}
	defer unix.Close(pfd)
	mnt, err := mountOf(pfd, parent)
	if err != nil {
		return err
	}
	return removeAt(pfd, base, path, mnt)
}

func removeAt(dirfd int, name, path string, mnt mountKey) error {
	err := IgnoringEINTR(func() error { return unix.Unlinkat(dirfd, name, 0) })
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM):
		return &os.PathError{Op: "unlinkat", Path: path, Err: err}
	}
	var fd int
	err = IgnoringEINTR(func() (e error) {
		fd, e = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return e
	})
	if err != nil {
		return &os.PathError{Op: "openat", Path: path, Err: err}
	}
	dir := os.NewFile(uintptr(fd), path) // owns fd
	defer dir.Close()
	m, err := mountOf(fd, path)
	if err != nil {
		return err
	}
	if m != mnt {
		return fmt.Errorf("%s %w", path, ErrMountPoint)
	}
	var errs []error
	for {
		names, rerr := dir.Readdirnames(1024)
		for _, n := range names {
			if err := removeAt(fd, n, filepath.Join(path, n), mnt); err != nil {
				errs = append(errs, err)
			}
		}
		if rerr != nil {
			break // io.EOF, or an error that the rmdir below reports
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := IgnoringEINTR(func() error { return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR) }); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: path, Err: err}
	}
	return nil
}
