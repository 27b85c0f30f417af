//go:build linux

package layer

import (
	"os"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// Thin wrappers around the syscalls this package uses: each retries EINTR
// and returns an *os.SyscallError or *os.PathError, so that callers can
// wrap them with what they were doing.

func pathErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return &os.PathError{Op: op, Path: path, Err: err}
}

// lstatat stats name in dirfd without following a final symlink.
func lstatat(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := sys.IgnoringEINTR(func() error { return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	return st, pathErr("fstatat", name, err)
}
