package rootfs

import "errors"

var (
	// ErrUnexpectedType is returned when a path inside the root is not the
	// kind of file an operation needs (a directory to mount a filesystem
	// on, a character device 1:3 to mask with, ...).
	ErrUnexpectedType = errors.New("unexpected file type")
	// ErrInvalidDevNull is returned when the container's /dev/null, used as
	// the source for masking files, is not the character device 1:3.
	ErrInvalidDevNull = errors.New("/dev/null is not the null character device")
	// ErrNotProcfs is returned when a path that must be a procfs is not.
	ErrNotProcfs = errors.New("not a procfs")
	// ErrInvalidMount is returned for a spec mount this package refuses:
	// a relative or root destination, an unsupported option, a mount over
	// /proc that is not procfs.
	ErrInvalidMount = errors.New("invalid mount")
)
