//go:build linux

// Package sys is the one home of the small syscall helpers that the
// executor's root filesystem setup (executor/internal/rootfs), the image
// layer unpacker and mounter (image/layer) and the image store (image)
// share: EINTR retries, openat and openat2 with O_CLOEXEC and path errors,
// fstat, a close of descriptors that carry no unwritten data,
// the kernel's messages of a filesystem context, the names of file types,
// a small read of a procfs or cgroupfs file (ReadSmall), and the stamp of
// a stat that tells whether a file or directory changed (Stamp); and the kernel facts several packages need: Linux's signal names
// and numbers (ParseSignal, SignalName: the one table of them) and which
// namespace holds a sysctl (SysctlNamespace). It is a leaf: it imports
// nothing of this module.
package sys

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// IgnoringEINTR calls fn until it fails with something other than EINTR.
func IgnoringEINTR(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Openat is openat(2) with O_CLOEXEC, retried on EINTR; its error is an
// *os.PathError naming path.
func Openat(dirfd int, path string, flags int, mode uint32) (int, error) {
	var fd int
	err := IgnoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, path, flags|unix.O_CLOEXEC, mode)
		return err
	})
	if err != nil {
		return -1, &os.PathError{Op: "openat", Path: path, Err: err}
	}
	return fd, nil
}

// Openat2 is openat2(2) with O_CLOEXEC added to how.Flags, retried on
// EINTR and on EAGAIN (a concurrent rename or mount raced with
// RESOLVE_IN_ROOT or RESOLVE_BENEATH: the kernel asks for another try, up
// to 32); its error is an *os.PathError naming path.
func Openat2(dirfd int, path string, how *unix.OpenHow) (int, error) {
	var fd int
	how.Flags |= unix.O_CLOEXEC
	err := IgnoringEINTR(func() (err error) {
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

// OpenPath opens name in dirfd as an O_PATH descriptor of the entry
// itself (O_NOFOLLOW: a symlink is opened, not followed) and stats it, so
// that what a caller checks is what it then acts on through the fd. On an
// error nothing stays open.
func OpenPath(dirfd int, name string) (int, unix.Stat_t, error) {
	fd, err := Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, unix.Stat_t{}, err
	}
	st, err := Fstat(fd)
	if err != nil {
		CloseFd(fd)
		return -1, st, err
	}
	return fd, st, nil
}

// Fstat is fstat(2), retried on EINTR; its error is an *os.SyscallError.
func Fstat(fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := IgnoringEINTR(func() error { return unix.Fstat(fd, &st) })
	return st, os.NewSyscallError("fstat", err)
}

// CloseFd closes fd unless it is negative (not open), and ignores the
// error: the descriptors the callers close (O_PATH, directories, trees,
// files only read) lose no data on a failing close(2).
func CloseFd(fd int) {
	if fd >= 0 {
		_ = unix.Close(fd)
	}
}

// ReadSmall reads what fits of a small file (procfs, cgroupfs) into buf
// with three syscalls, where os.ReadFile makes seven and allocates. Its
// error is an *os.PathError naming path.
func ReadSmall(path string, buf []byte) (int, error) {
	fd, err := OpenRetry(path, unix.O_RDONLY)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: path, Err: err}
		}
		return n, nil
	}
}

// FsLog reads the messages the kernel left in a filesystem context (an
// fsopen(2) descriptor), joined with "; ": the reason behind an EINVAL.
func FsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for i := 0; i < 8; i++ {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	return strings.Join(msgs, "; ")
}

// TypeName names the file type in a stat mode: "directory", "symlink", ….
func TypeName(mode uint32) string {
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

// OpenRetry opens the existing file path with flags and O_CLOEXEC, again
// on EINTR; its error is an *os.PathError naming path. A loop rather than
// IgnoringEINTR: a closure would move fd to the heap, and the daemon opens
// files of every container often.
func OpenRetry(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, unix.EINTR) {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

// ReadFile is os.ReadFile for the kernel's own files (cgroupfs, /proc,
// /sys): open, read until end of file, close. os.ReadFile adds an fstat
// for the size (0 on those files), and os.OpenFile registers a file that
// can be polled, as kernfs files can, with the runtime's poller: an
// epoll_ctl, two fcntls and another epoll_ctl at close. On a 2-core VM
// where a system call costs 1 us that is 27 us a read against 7.
func ReadFile(path string) ([]byte, error) {
	fd, err := OpenRetry(path, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// WriteFile writes data to the existing file path, opened write-only with
// flag added (O_TRUNC, O_APPEND), in one write(2): the way cgroupfs and
// /proc files take a value. It skips the poller as ReadFile does.
func WriteFile(path string, data []byte, flag int) error {
	fd, err := OpenRetry(path, unix.O_WRONLY|flag)
	if err != nil {
		return err
	}
	err = WriteFd(fd, path, data)
	cerr := unix.Close(fd)
	if err == nil && cerr != nil && !errors.Is(cerr, unix.EINTR) {
		return &os.PathError{Op: "close", Path: path, Err: cerr}
	}
	return err
}

// WriteFd writes data to fd, opened on path, in one write(2), again on
// EINTR: a value for a kernel file, or one of several to one opened once
// (each write a rule: devices.allow). Its error is an *os.PathError naming
// path.
func WriteFd(fd int, path string, data []byte) error {
	var n int
	var err error
	for {
		n, err = unix.Write(fd, data)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case err != nil:
		return &os.PathError{Op: "write", Path: path, Err: err}
	case n < len(data):
		return &os.PathError{Op: "write", Path: path, Err: io.ErrShortWrite}
	}
	return nil
}
