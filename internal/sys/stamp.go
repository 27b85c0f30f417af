//go:build linux

package sys

import (
	"io/fs"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Stamp is what a stat says about a file or directory that changes when
// its content, its entries, its place or its owner and mode do: where it is
// (Dev, Ino), its size, link count and times, and its mode and owner. Two
// stats of a path with equal stamps saw the same version of it, unless
// the first is Racy. The zero Stamp stands for nothing there (no inode is
// 0).
type Stamp struct {
	Dev, Ino     uint64
	Size         int64
	Nlink        uint64
	Mode, UID    uint32
	Mtime, Ctime int64 // ns since the epoch
}

// StampOf is the stamp of st.
func StampOf(st *unix.Stat_t) Stamp {
	return Stamp{
		Dev: st.Dev, Ino: st.Ino, Size: st.Size, Nlink: uint64(st.Nlink),
		Mode: st.Mode, UID: st.Uid,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
	}
}

// StatStamp is the stamp of path, through its symlinks; its error is an
// *os.PathError.
func StatStamp(path string) (Stamp, error) {
	var st unix.Stat_t
	for {
		err := unix.Stat(path, &st)
		if err == nil {
			return StampOf(&st), nil
		}
		if err != unix.EINTR {
			return Stamp{}, &os.PathError{Op: "stat", Path: path, Err: err}
		}
	}
}

// StampOfInfo is the stamp of what fi describes (os.Stat, (*os.File).Stat),
// false when fi carries no stat (not from this OS).
func StampOfInfo(fi fs.FileInfo) (Stamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Stamp{}, false
	}
	return Stamp{
		Dev: st.Dev, Ino: st.Ino, Size: st.Size, Nlink: uint64(st.Nlink),
		Mode: st.Mode, UID: st.Uid,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
	}, true
}

// Regular says whether the stamp is of a regular file.
func (s Stamp) Regular() bool { return s.Mode&unix.S_IFMT == unix.S_IFREG }

// RacyWindow is how long after a change a stamp vouches for nothing: file
// times come from a coarse clock (the kernel's tick), so a second change
// within it may leave them as they are (git calls such an index entry
// "racily clean").
const RacyWindow = time.Second

// Racy says whether the stamp, taken at now, shows a change within
// RacyWindow of now: then an equal stamp later does not prove that
// nothing changed.
func (s Stamp) Racy(now time.Time) bool {
	recent := now.Add(-RacyWindow).UnixNano()
	return s.Mtime >= recent || s.Ctime >= recent
}
