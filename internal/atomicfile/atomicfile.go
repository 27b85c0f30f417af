package atomicfile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Durability says what survives a power cut.
type Durability int

const (
	// NoSync: rename only. For views that are written again after a crash.
	NoSync Durability = iota
	// SyncFile: the file is fsynced before the rename, so whatever name it
	// is found under after a crash, its content is whole.
	SyncFile
	// SyncDir: and the directory is fsynced after the rename, so the
	// rename itself survives.
	SyncDir
)

// Write replaces dir/name with data, mode perm.
func Write(dir, name string, data []byte, perm os.FileMode, d Durability) error {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if d >= SyncFile {
		if err := tmp.Sync(); err != nil {
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	ok = true
	if d >= SyncDir {
		return SyncDirectory(dir)
	}
	return nil
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
