package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// ignoringEINTR is shared with the executor and image/layer.
var ignoringEINTR = sys.IgnoringEINTR

// fileLock is an flock held on an open lock file.
type fileLock struct{ f *os.File }

func (l fileLock) unlock() {
	// Closing the file releases the lock.
	l.f.Close()
}

// lockFile opens (creating) path and takes an flock on it: exclusive or
// shared, blocking until it is had.
func lockFile(path string, how int) (fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fileLock{}, err
	}
	if err := ignoringEINTR(func() error { return unix.Flock(int(f.Fd()), how) }); err != nil {
		f.Close()
		return fileLock{}, fmt.Errorf("locking %s: %w", path, os.NewSyscallError("flock", err))
	}
	return fileLock{f}, nil
}

// lockFileContext is lockFile that gives up when ctx is done, polling
// for the lock.
func lockFileContext(ctx context.Context, path string, how int) (fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fileLock{}, err
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := ignoringEINTR(func() error { return unix.Flock(int(f.Fd()), how|unix.LOCK_NB) })
		if err == nil {
			return fileLock{f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return fileLock{}, fmt.Errorf("locking %s: %w", path, os.NewSyscallError("flock", err))
		}
		select {
		case <-ctx.Done():
			f.Close()
			return fileLock{}, fmt.Errorf("waiting for %s: %w", path, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// renameNoReplace renames oldpath to newpath unless newpath exists, in which
// case it returns an error that errors.Is(err, fs.ErrExist).
func renameNoReplace(oldpath, newpath string) error {
	err := ignoringEINTR(func() error {
		return unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	})
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_NOREPLACE. The check races with
		// another process, which is harmless here: both copies are
		// verified and equal, and a directory is not renamed over a
		// non-empty one.
		if _, serr := os.Lstat(newpath); serr == nil {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: unix.EEXIST}
		}
		return os.Rename(oldpath, newpath)
	}
	if err != nil {
		return &os.LinkError{Op: "renameat2", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// isExist says whether a rename failed because the target is there.
func isExist(err error) bool {
	return errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY)
}

// syncFS flushes the file system that holds path: one call for all the
// files of an unpacked layer, instead of an fsync each.
func syncFS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: path, Err: err}
	}
	return nil
}

// mountKey identifies the mount an open file is on: the mount ID where
// statx gives one (it tells bind mounts of one file system apart), else
// the device.
type mountKey struct{ id, dev uint64 }

func mountOf(fd int, path string) (mountKey, error) {
	var stx unix.Statx_t
	err := ignoringEINTR(func() error {
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

// errMountPoint is returned for a directory that is another mount: it is
// left in place.
var errMountPoint = errors.New("is a mount point; not removed")

// removeTree deletes path and everything under it, depth first, with
// *at calls relative to open directories: symlinks are removed, never
// followed, and a directory on another mount than path's parent is not
// entered (the removal fails with errMountPoint and the rest is still
// removed). A missing path is not an error.
func removeTree(path string) error {
	parent, base := filepath.Split(filepath.Clean(path))
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
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
	err := ignoringEINTR(func() error { return unix.Unlinkat(dirfd, name, 0) })
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM):
		return &os.PathError{Op: "unlinkat", Path: path, Err: err}
	}
	var fd int
	err = ignoringEINTR(func() (e error) {
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
		return fmt.Errorf("%s %w", path, errMountPoint)
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
	if err := ignoringEINTR(func() error { return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR) }); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: path, Err: err}
	}
	return nil
}
