package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
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

func (r *rotator) check() {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("unable to list log directory", "dir", r.dir, "err", err)
		}
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() <= r.maxSize {
			continue
		}
		if err := rotate(filepath.Join(r.dir, e.Name()), r.keep); err != nil {
			r.log.Warn("unable to rotate log file", "file", e.Name(), "err", err)
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
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(path+".1", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
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
	return os.Truncate(path, 0)
}
