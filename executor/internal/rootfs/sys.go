//go:build linux

package rootfs

import (
	"os"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// Thin wrappers around the syscalls this package uses: each retries EINTR
// and returns an *os.SyscallError (or *os.PathError where a path names the
// object) so that callers can wrap them with what they were doing.

func sysErr(name string, err error) error {
	if err == nil {
		return nil
	}
	return os.NewSyscallError(name, err)
}

func mount(source, target, fstype string, flags uintptr, data string) error {
	err := sys.IgnoringEINTR(func() error { return unix.Mount(source, target, fstype, flags, data) })
	if err != nil {
		return &os.PathError{Op: "mount " + source + " (" + fstype + ")", Path: target, Err: err}
	}
	return nil
}

func fstatfs(fd int) (unix.Statfs_t, error) {
	var st unix.Statfs_t
	err := sys.IgnoringEINTR(func() error { return unix.Fstatfs(fd, &st) })
	return st, sysErr("fstatfs", err)
}

func statfs(path string) (unix.Statfs_t, error) {
	var st unix.Statfs_t
	err := sys.IgnoringEINTR(func() error { return unix.Statfs(path, &st) })
	if err != nil {
		return st, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return st, nil
}

func readlinkat(dirfd int, path string) (string, error) {
	for size := 128; ; size *= 2 {
		buf := make([]byte, size)
		var n int
		err := sys.IgnoringEINTR(func() (err error) {
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

// dupFile duplicates f with O_CLOEXEC, so that the copy can be closed
// independently.
func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, sysErr("fcntl(F_DUPFD_CLOEXEC)", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
