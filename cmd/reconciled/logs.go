//go:build !reconciled_lean

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/daemon"
)

func init() {
	register(&command{
		name:    "logs",
		summary: "print a container's stdout and stderr (-f to follow)",
		run:     runLogs,
	})
}

func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := newFlagSet("logs", "logs [--state DIR] [--log-dir DIR] NAME [-f] [--tail N]", stderr)
	state := flags.String("state", daemon.DefaultState, "the daemon's state directory (it says where the logs are)")
	logDir := flags.String("log-dir", "", "log directory (default: the daemon's, else "+daemon.DefaultLogDir+")")
	follow := flags.Bool("f", false, "follow: print new lines as they are written (survives rotation)")
	tail := flags.Int("tail", -1, "print only the last N lines (-1: all)")
	pos, ok := parseArgs(flags, args, 1, 1)
	if !ok {
		return 2
	}
	name := pos[0]
	if err := executor.ValidateID(name); err != nil {
		fmt.Fprintf(stderr, "reconciled logs: %v\n", err)
		return 2
	}
	dir := *logDir
	if dir == "" {
		dir = daemon.DefaultLogDir
		if info, err := daemon.ReadInfo(*state); err == nil && info.LogDir != "" {
			dir = info.LogDir
		}
	}
	path := daemon.LogFile(dir, name)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stderr, "reconciled logs: no log for container %s (%s does not exist)\n", name, termSafe(path))
		} else {
			fmt.Fprintf(stderr, "reconciled logs: %s\n", termSafe(err.Error()))
		}
		return 1
	}
	defer f.Close()
	off, err := printTail(stdout, f, *tail)
	if err != nil {
		fmt.Fprintf(stderr, "reconciled logs: %s\n", termSafe(err.Error()))
		return 1
	}
	if !*follow {
		return 0
	}
	if err := followFile(ctx, stdout, path, f, off, 250*time.Millisecond); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "reconciled logs: %s\n", termSafe(err.Error()))
		return 1
	}
	return 0
}

// printTail copies the last n lines of f (all when n < 0) to w and returns
// the offset it stopped at.
func printTail(w io.Writer, f *os.File, n int) (int64, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	start := int64(0)
	if n >= 0 {
		start = tailStart(f, size, n)
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return 0, err
	}
	copied, err := io.CopyN(w, f, size-start)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return start + copied, nil
}

// tailStart finds where the last n lines of the first size bytes of f
// begin, reading backwards in blocks. A last line without its newline
// counts as a line.
func tailStart(f *os.File, size int64, n int) int64 {
	if n == 0 {
		return size
	}
	const block = 32 << 10
	buf := make([]byte, block)
	end := size
	seen := 0
	for end > 0 {
		start := max(end-block, 0)
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
			return 0
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] != '\n' || start+int64(i) == size-1 {
				continue
			}
			seen++
			if seen == n {
				return start + int64(i) + 1
			}
		}
		end = start
	}
	return 0
}

// followFile prints what is appended to path from off on, until ctx ends.
// The daemon rotates by copy and truncate: a file that became shorter than
// what was read is read again from its start; a file replaced by another
// (same path, new inode) is reopened.
func followFile(ctx context.Context, w io.Writer, path string, f *os.File, off int64, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	buf := make([]byte, 64<<10)
	for {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if pi, err := os.Stat(path); err == nil && !os.SameFile(fi, pi) {
			// Replaced: finish the old file, then switch.
			if _, err := copyFrom(w, f, off, buf); err != nil {
				return err
			}
			nf, err := os.Open(path)
			if err == nil {
				f.Close()
				f, off = nf, 0
				defer nf.Close()
				continue
			}
		}
		if fi.Size() < off {
			off = 0 // truncated (rotated)
		}
		if fi.Size() > off {
			n, err := copyFrom(w, f, off, buf)
			off += n
			if err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func copyFrom(w io.Writer, f *os.File, off int64, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := f.ReadAt(buf, off+total)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			return total, err
		}
	}
}
