package image

import (
	"context"
	"errors"
	"fmt"
	"os"
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

// removeTree and errMountPoint: internal/sys (shared with the daemon).
var (
	removeTree    = sys.RemoveTree
	errMountPoint = sys.ErrMountPoint
)
