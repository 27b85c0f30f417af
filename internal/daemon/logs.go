package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Log rotation defaults.
const (
	DefaultLogMaxSize = 10 << 20 // bytes
	DefaultLogKeep    = 3        // NAME.log.1 .. NAME.log.3
	logCheckEvery     = 30 * time.Second
)

// rotator keeps the containers' log files under a size cap.
//
// The writer is the container itself (its stdout and stderr are the file,
// opened O_APPEND), so the file cannot be renamed away: the container would
// go on writing to the renamed file. The rule is copytruncate, as
// logrotate names it: every 30 seconds, a NAME.log larger than the cap is
// copied to NAME.log.1 (older copies shift to .2, .3; the oldest beyond
// keep is removed) and then truncated to zero; the container's next write
// lands at the start of the file (O_APPEND). Lines written between the
// copy and the truncation are lost, and a file may exceed the cap by what
// is written in 30 seconds.
type rotator struct {
	dir     string
	maxSize int64
	keep    int
	log     *slog.Logger
	buf     []byte // for getdents, kept between checks
}

func (r *rotator) Run(ctx context.Context) {
	t := time.NewTicker(logCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.check()
		}
	}
}

// check rotates the log files over the cap. It runs every 30 seconds
// whatever the containers do, so it lists the directory and stats each
// file relative to it, allocating nothing per file: with a thousand
// containers os.ReadDir and a Stat by full path made this most of an
// idle daemon's work.
func (r *rotator) check() {
	fd, err := unix.Open(r.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			r.log.Warn("unable to list log directory", "dir", r.dir, "err", os.NewSyscallError("open", err))
		}
		return
	}
	defer unix.Close(fd)
	if r.buf == nil {
		r.buf = make([]byte, 32<<10)
	}
	var big []string
	for {
		n, err := unix.Getdents(fd, r.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			r.log.Warn("unable to list log directory", "dir", r.dir, "err", os.NewSyscallError("getdents64", err))
			break
		}
		if n <= 0 {
			break
		}
		// struct linux_dirent64: ino (8 bytes), off (8), reclen (2), type
		// (1), then the name, NUL-terminated.
		for off := 0; off+19 <= n; {
			reclen := int(binary.NativeEndian.Uint16(r.buf[off+16:]))
			if reclen < 19 || off+reclen > n {
				break
			}
			typ := r.buf[off+18]
			name := r.buf[off+19 : off+reclen]
			off += reclen
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if !bytes.HasSuffix(name, []byte(".log")) || (typ != unix.DT_REG && typ != unix.DT_UNKNOWN) {
				continue
			}
			var st unix.Stat_t
			if err := unix.Fstatat(fd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				continue // removed meanwhile
			}
			if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size > r.maxSize {
				big = append(big, string(name))
			}
		}
	}
	for _, name := range big {
		if err := rotate(filepath.Join(r.dir, name), r.keep); err != nil {
			r.log.Warn("unable to rotate log file", "file", name, "err", err)
		}
	}
}

// rotate copies path to path.1 (shifting older copies, keeping keep) and
// truncates path.
func rotate(path string, keep int) error {
	if keep < 1 {
		keep = 1
	}
	if err := os.Remove(path + "." + strconv.Itoa(keep)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for i := keep - 1; i >= 1; i-- {
		err := os.Rename(path+"."+strconv.Itoa(i), path+"."+strconv.Itoa(i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	// Neither name is followed if it is a symlink (O_NOFOLLOW), and the
	// log is truncated through the descriptor it was copied from: a link
	// swapped in meanwhile never makes the daemon copy over, or
	// truncate, a file of the link's choosing.
	src, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	if fi, err := src.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file; not rotated", path)
	}
	dst, err := os.OpenFile(path+".1", os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("unable to copy %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return src.Truncate(0)
}
