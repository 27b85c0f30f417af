//go:build linux

package layer

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Thin wrappers around the syscalls this package uses: each retries EINTR
// and returns an *os.SyscallError or *os.PathError, so that callers can
// wrap them with what they were doing.

func ignoringEINTR(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func pathErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return &os.PathError{Op: op, Path: path, Err: err}
}

func openat(dirfd int, path string, flags int, mode uint32) (int, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, path, flags|unix.O_CLOEXEC, mode)
		return err
	})
	if err != nil {
		return -1, pathErr("openat", path, err)
	}
	return fd, nil
}

func openat2(dirfd int, path string, how *unix.OpenHow) (int, error) {
	var fd int
	how.Flags |= unix.O_CLOEXEC
	err := ignoringEINTR(func() (err error) {
		// EAGAIN: a concurrent rename or mount raced with RESOLVE_IN_ROOT;
		// the kernel asks us to try again.
		for i := 0; i < 32; i++ {
			fd, err = unix.Openat2(dirfd, path, how)
			if !errors.Is(err, unix.EAGAIN) {
				return err
			}
		}
		return err
	})
	if err != nil {
		return -1, pathErr("openat2", path, err)
	}
	return fd, nil
}

func fstat(fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := ignoringEINTR(func() error { return unix.Fstat(fd, &st) })
	return st, os.NewSyscallError("fstat", err)
}

// lstatat stats name in dirfd without following a final symlink.
func lstatat(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := ignoringEINTR(func() error { return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	return st, pathErr("fstatat", name, err)
}

func closeFd(fd int) {
	if fd >= 0 {
		_ = unix.Close(fd) // read-only, O_PATH and directory fds: close(2) loses no data
	}
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("file of type %#o", mode&unix.S_IFMT)
}
