//go:build linux

package rootfs

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Thin wrappers around the syscalls this package uses: each retries EINTR
// and returns an *os.SyscallError (or *os.PathError where a path names the
// object) so that callers can wrap them with what they were doing.

func ignoringEINTR(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func sysErr(name string, err error) error {
	if err == nil {
		return nil
	}
	return os.NewSyscallError(name, err)
}

func mount(source, target, fstype string, flags uintptr, data string) error {
	err := ignoringEINTR(func() error { return unix.Mount(source, target, fstype, flags, data) })
	if err != nil {
		return &os.PathError{Op: "mount " + source + " (" + fstype + ")", Path: target, Err: err}
	}
	return nil
}

func openat(dirfd int, path string, flags int, mode uint32) (int, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, path, flags|unix.O_CLOEXEC, mode)
		return err
	})
	if err != nil {
		return -1, &os.PathError{Op: "openat", Path: path, Err: err}
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
		return -1, &os.PathError{Op: "openat2", Path: path, Err: err}
	}
	return fd, nil
}

func fstat(fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := ignoringEINTR(func() error { return unix.Fstat(fd, &st) })
	return st, sysErr("fstat", err)
}

func fstatfs(fd int) (unix.Statfs_t, error) {
	var st unix.Statfs_t
	err := ignoringEINTR(func() error { return unix.Fstatfs(fd, &st) })
	return st, sysErr("fstatfs", err)
}

func statfs(path string) (unix.Statfs_t, error) {
	var st unix.Statfs_t
	err := ignoringEINTR(func() error { return unix.Statfs(path, &st) })
	if err != nil {
		return st, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return st, nil
}

func readlinkat(dirfd int, path string) (string, error) {
	for size := 128; ; size *= 2 {
		buf := make([]byte, size)
		var n int
		err := ignoringEINTR(func() (err error) {
			n, err = unix.Readlinkat(dirfd, path, buf)
			return err
		})
		if err != nil {
			return "", sysErr("readlinkat", err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

func closeFd(fd int) {
	if fd >= 0 {
		_ = unix.Close(fd) // close(2) errors on O_PATH and tree fds carry no data loss
	}
}

// dupFile duplicates f with O_CLOEXEC, so that the copy can be closed
// independently.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, sysErr("fcntl(F_DUPFD_CLOEXEC)", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
