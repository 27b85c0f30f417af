package atomicfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// Durability says what survives a power cut.
type Durability int

const (
	// NoSync: rename only. For views that are written again after a crash,
	// and for what describes processes, which a crash ends too.
	NoSync Durability = iota
	// SyncDir: the file is fsynced before the rename, so its content is
	// whole under whatever name it is found after a crash, and the
	// directory after it, so that the rename itself survives.
	SyncDir
)

// Write replaces dir/name with data, mode perm.
//
// It works on file descriptors, not *os.File: an os.File of a regular file
// costs four fcntl calls and an epoll_ctl that always fails, and os.Rename
// an lstat, on every state file a container's create writes.
func Write(dir, name string, data []byte, perm os.FileMode, d Durability) error {
	fd, tmp, err := createTemp(dir, name)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
			unix.Unlink(tmp)
		}
	}()
	// The mode is set whatever the umask.
	if err := sys.IgnoringEINTR(func() error { return unix.Fchmod(fd, uint32(perm.Perm())) }); err != nil {
		return &os.PathError{Op: "chmod", Path: tmp, Err: err}
	}
	for rest := data; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "write", Path: tmp, Err: err}
		}
		rest = rest[n:]
	}
	if d >= SyncDir {
		if err := sys.IgnoringEINTR(func() error { return unix.Fsync(fd) }); err != nil {
			return &os.PathError{Op: "sync", Path: tmp, Err: err}
		}
	}
	ok = true // closed below, whatever close says
	if err := unix.Close(fd); err != nil {
		unix.Unlink(tmp)
		return &os.PathError{Op: "close", Path: tmp, Err: err}
	}
	dst := filepath.Join(dir, name)
	if err := sys.IgnoringEINTR(func() error { return unix.Rename(tmp, dst) }); err != nil {
		unix.Unlink(tmp)
		return &os.LinkError{Op: "rename", Old: tmp, New: dst, Err: err}
	}
	if d >= SyncDir {
		return SyncDirectory(dir)
	}
	return nil
}

// createTemp creates a new file in dir named after name (".NAME.tmpRANDOM",
// as os.CreateTemp names them), write-only, and returns its descriptor and
// path. A name taken is skipped.
func createTemp(dir, name string) (int, string, error) {
	prefix := filepath.Join(dir, "."+name+".tmp")
	for tries := 0; ; tries++ {
		path := prefix + strconv.FormatUint(uint64(rand.Uint32()), 10)
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err == nil {
			return fd, path, nil
		}
		if errors.Is(err, unix.EINTR) || (errors.Is(err, unix.EEXIST) && tries < 100) {
			continue
		}
		return -1, "", &os.PathError{Op: "open", Path: path, Err: err}
	}
}

// WriteJSON replaces dir/name with v encoded as JSON.
func WriteJSON(dir, name string, v any, perm os.FileMode, d Durability) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	return Write(dir, name, data, perm, d)
}

// SyncDirectory fsyncs dir, making the entries created or renamed in it
// durable.
func SyncDirectory(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("open", err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return os.NewSyscallError("fsync", err)
	}
	return nil
}
