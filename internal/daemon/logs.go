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
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Log rotation defaults.
const (
	DefaultLogMaxSize = 10 << 20 // bytes
	DefaultLogKeep    = 3        // NAME.log.1 .. NAME.log.3
	// logRelistEvery is the period of the full relist beside the inotify
	// watch, as kubelet relists beside its own: a queue that overflowed
	// (IN_Q_OVERFLOW) is followed by a relist at once, this is for what
	// nobody foresaw.
	logRelistEvery = 30 * time.Second
	// logCheckSpacing is the least time between two looks at the files
	// the watch reported: events that arrive meanwhile wait in the kernel
	// (which merges repeats), so a file is checked at most ten times a
	// second however often it is written. At 60 MB/s a 10 MiB log is
	// caught about 6 MB past the cap.
	logCheckSpacing = 100 * time.Millisecond
	// logPollEvery is the full check's period when the directory cannot
	// be watched.
	logPollEvery = time.Second
)

// rotator keeps the containers' log files under a size cap.
//
// The writer is the container itself (its stdout and stderr are the file,
// opened O_APPEND), so the file cannot be renamed away: the container would
// go on writing to the renamed file, and the daemon stays off the write
// path. The rule is copytruncate, as logrotate names it: a NAME.log larger
// than the cap is copied to NAME.log.1 (older copies shift to .2, .3; the
// oldest beyond keep is removed) and then truncated to zero; the
// container's next write lands at the start of the file (O_APPEND). Lines
// written between the copy and the truncation are lost. On a full file
// system (the copy fails with ENOSPC or EDQUOT) the log is truncated
// without a copy: the copy is lost, the log keeps working.
//
// When the cap is checked: an inotify watch on the directory (IN_MODIFY)
// says which files were written, and those are looked at (one fstatat
// each) at most every logCheckSpacing, so a log is rotated within about a
// tenth of a second of passing the cap and an idle daemon does nothing. A
// full relist runs every logRelistEvery and when the watch overflows;
// without a watch (no inotify, no directory yet) the full check runs every
// logPollEvery.
type rotator struct {
	dir     string
	maxSize int64
	keep    int
	log     *slog.Logger
	buf     []byte // for getdents, kept between checks
	listErr string // the last failure to open the directory, logged once
}

// warnOnce logs a failure to open the directory, unless it is the one
// logged last: checks run up to ten times a second, and out of
// descriptors (EMFILE) every one of them fails the same way.
func (r *rotator) warnOnce(msg string, err error) {
	if err.Error() == r.listErr {
		return
	}
	r.listErr = err.Error()
	r.log.Warn(msg, "dir", r.dir, "err", err)
}

func (r *rotator) Run(ctx context.Context) {
	r.check()
	var failed string // the watch's last failure, logged once
	for {
		w, err := newDirWatch(ctx, r.dir)
		if err == nil {
			failed = ""
			r.watch(ctx, w) // until ctx ends or the watch is lost
			w.close()
		} else if err.Error() != failed {
			failed = err.Error()
			r.log.Warn("unable to watch the log directory; checking log sizes every second", "dir", r.dir, "err", err)
		}
		// Without a watch: a full check every second, and a new try.
		select {
		case <-ctx.Done():
			return
		case <-time.After(logPollEvery):
		}
		r.check()
	}
}

// watch checks the files w reports until ctx ends or the watch is lost
// (the directory removed); it returns then.
func (r *rotator) watch(ctx context.Context, w *dirWatch) {
	relist := time.Now().Add(logRelistEvery)
	names := map[string]struct{}{}
	for {
		all, gone, err := w.wait(relist, names)
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			all = true
		case err != nil:
			r.log.Warn("unable to read the log directory's watch", "dir", r.dir, "err", err)
			return
		}
		if all || gone {
			clear(names)
			r.check()
			relist = time.Now().Add(logRelistEvery)
		} else if len(names) > 0 {
			r.checkNames(names)
			clear(names)
		}
		if gone {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(logCheckSpacing):
		}
	}
}

// dirWatch is an inotify instance watching one directory for writes to
// its files. Its descriptor is in Go's poller, so a wait blocks no thread
// and ends when the context does.
type dirWatch struct {
	f    *os.File
	raw  syscall.RawConn
	stop func() bool
	buf  []byte
}

func newDirWatch(ctx context.Context, dir string) (*dirWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MODIFY|unix.IN_ONLYDIR); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("inotify_add_watch", err)
	}
	f := os.NewFile(uintptr(fd), "inotify:"+dir)
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	// Closing the file wakes a wait blocked in the poller.
	stop := context.AfterFunc(ctx, func() { f.Close() })
	return &dirWatch{f: f, raw: raw, stop: stop, buf: make([]byte, 64<<10)}, nil
}

func (w *dirWatch) close() {
	w.stop()
	w.f.Close()
}

// wait blocks until there are events (or until deadline: then the error is
// os.ErrDeadlineExceeded), then reads every queued event without blocking
// again. It adds the names of the .log files written to names; all says
// the queue overflowed (anything may have been written), gone that the
// watch ended (the directory was removed or its file system unmounted).
func (w *dirWatch) wait(deadline time.Time, names map[string]struct{}) (all, gone bool, err error) {
	if err := w.f.SetReadDeadline(deadline); err != nil {
		return false, false, err
	}
	first := true
	for {
		var n int
		var rerr error
		// Only the first read waits for events (false: wait until the
		// descriptor is readable, then call again); the others take what
		// is queued.
		err := w.raw.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), w.buf)
			return !first || rerr != unix.EAGAIN
		})
		if err != nil {
			return all, gone, err
		}
		switch {
		case rerr == unix.EINTR:
			continue
		case rerr == unix.EAGAIN:
			return all, gone, nil
		case rerr != nil:
			return all, gone, os.NewSyscallError("read", rerr)
		}
		first = false
		a, g := parseEvents(w.buf[:n], names)
		all, gone = all || a, gone || g
		if n <= len(w.buf)-(unix.SizeofInotifyEvent+unix.NAME_MAX+1) {
			return all, gone, nil // the largest event would have fit: the queue is empty
		}
	}
}

// parseEvents adds the .log names in buf (struct inotify_event records)
// to names.
func parseEvents(buf []byte, names map[string]struct{}) (all, gone bool) {
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		mask := binary.NativeEndian.Uint32(buf[off+4:])
		nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
		end := off + unix.SizeofInotifyEvent + nameLen
		if end > len(buf) {
			break
		}
		name := buf[off+unix.SizeofInotifyEvent : end]
		off = end
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		switch {
		case mask&unix.IN_Q_OVERFLOW != 0:
			all = true
		case mask&unix.IN_IGNORED != 0:
			gone = true
		case mask&unix.IN_ISDIR == 0 && bytes.HasSuffix(name, []byte(".log")):
			names[string(name)] = struct{}{}
		}
	}
	return all, gone
}

// checkNames rotates those of names (files in the directory) that are
// over the cap.
func (r *rotator) checkNames(names map[string]struct{}) {
	fd, ok := r.openDir("unable to open log directory")
	if !ok {
		return
	}
	var big []string
	for name := range names {
		if r.over(fd, name) {
			big = append(big, name)
		}
	}
	unix.Close(fd)
	r.rotateAll(big)
}

// openDir opens the log directory. A failure other than its absence is
// logged as msg, once until the directory opens again.
func (r *rotator) openDir(msg string) (int, bool) {
	fd, err := unix.Open(r.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			r.warnOnce(msg, os.NewSyscallError("open", err))
		}
		return -1, false
	}
	r.listErr = ""
	return fd, true
}

// over says whether the regular file name in the directory fd is larger
// than the cap (fstatat, not following a symlink).
func (r *rotator) over(fd int, name string) bool {
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false // removed meanwhile
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size > r.maxSize
}

func (r *rotator) rotateAll(names []string) {
	for _, name := range names {
		err := rotate(filepath.Join(r.dir, name), r.keep)
		var lost *copyLostError
		switch {
		case errors.As(err, &lost):
			r.log.Warn("log file truncated without a copy: its file system is full", "file", name, "err", lost.err)
		case err != nil:
			r.log.Warn("unable to rotate log file", "file", name, "err", err)
		}
	}
}

// check rotates the log files over the cap, looking at every file. It
// runs every 30 seconds whatever the containers do (every second without
// a watch), so it lists the directory and stats each file relative to it,
// allocating nothing per file: with a thousand containers os.ReadDir and a
// Stat by full path made this most of an idle daemon's work.
func (r *rotator) check() {
	fd, ok := r.openDir("unable to list log directory")
	if !ok {
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
			if r.over(fd, string(name)) {
				big = append(big, string(name))
			}
		}
	}
	r.rotateAll(big)
}

// copyLostError is rotate's report that the log was truncated without
// its copy because the file system is full.
type copyLostError struct{ err error }

func (e *copyLostError) Error() string {
	return "truncated without a copy: " + e.err.Error()
}

func (e *copyLostError) Unwrap() error { return e.err }

// diskFull says whether err is a full file system or quota.
func diskFull(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// rotate copies path to path.1 (shifting older copies, keeping keep) and
// truncates path. When the copy cannot be written because the file system
// is full, the partial copy is removed and path truncated all the same,
// and the error is a *copyLostError: a full disk must not stop the cap.
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
	fi, err := src.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file; not rotated", path)
	}
	copyPath := path + ".1"
	lost := func(err error) error {
		if rerr := os.Remove(copyPath); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		if terr := src.Truncate(0); terr != nil {
			return errors.Join(fmt.Errorf("unable to copy %s: %w", path, err), terr)
		}
		return &copyLostError{err: err}
	}
	dst, err := os.OpenFile(copyPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
	if err != nil {
		if diskFull(err) {
			return lost(err)
		}
		return err
	}
	// What the writer adds during the copy is copied too, up to twice the
	// size seen at the start: a writer faster than the copy cannot keep
	// it going.
	_, err = io.Copy(dst, io.LimitReader(src, 2*fi.Size()))
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if diskFull(err) {
			return lost(err)
		}
		return fmt.Errorf("unable to copy %s: %w", path, err)
	}
	return src.Truncate(0)
}
