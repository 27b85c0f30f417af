package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil"
)

// runRotator starts r.Run until the test ends.
func runRotator(t *testing.T, r *rotator) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("the rotator did not stop within 5s of its context")
		}
	})
}

// A log written fast is held near its cap while it is written, not only
// at the next 30-second round: sampled every 50 ms, a 1 MiB-capped log
// written at about 3 MB/s never passes 2 MiB. (With the old 30 s period it
// passes 2 MiB in under a second.) The writer is paced by sleeps, so a
// loaded machine slows it down too: the bound leaves the rotator about
// 300 ms per rotation.
func TestLogCapHeldWhileWritten(t *testing.T) {
	const maxSize = 1 << 20
	dir := t.TempDir()
	path := filepath.Join(dir, "web.log")
	r := &rotator{dir: dir, maxSize: maxSize, keep: 2, log: slog.New(slog.DiscardHandler)}
	runRotator(t, r)

	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var (
		mu      sync.Mutex
		written int64
		werr    error
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		chunk := bytes.Repeat([]byte("0123456789abcdef0123456789abcde\n"), 1024) // 32 KiB
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, err := w.Write(chunk)
			mu.Lock()
			written += int64(n)
			if err != nil && werr == nil {
				werr = err
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	// At least 3 s, and until the writer has written six times the cap
	// (a slow machine slows the writer: the test waits for it, up to 60 s).
	var peak int64
	start := time.Now()
	for {
		time.Sleep(50 * time.Millisecond)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		peak = max(peak, fi.Size())
		if fi.Size() > 2*maxSize {
			t.Fatalf("after %v the log is %d bytes, more than twice its cap (%d)", time.Since(start).Round(time.Millisecond), fi.Size(), maxSize)
		}
		mu.Lock()
		n, err := written, werr
		mu.Unlock()
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
		if time.Since(start) >= 3*time.Second && n >= 6*maxSize {
			t.Logf("wrote %d bytes in %v; the log peaked at %d bytes", n, time.Since(start).Round(time.Millisecond), peak)
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the writer wrote only %d bytes in 60s", n)
		}
	}
	if fi, err := os.Stat(path + ".1"); err != nil || fi.Size() < maxSize {
		t.Errorf("no rotated copy of at least the cap: %v", sizeOrErr(fi, err))
	}
}

// A rotation on a full file system truncates the log without a copy (the
// copy is lost, the log keeps working), instead of leaving it to grow:
// a 2 MiB tmpfs holds a 1.25 MiB log, whose copy cannot fit.
func TestLogRotationOnFullDiskTruncates(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=2m,mode=0750"); err != nil {
		testutil.SkipOrFail(t, "unable to mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	path := filepath.Join(dir, "web.log")
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(bytes.Repeat([]byte("x"), 1280<<10)); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	r := &rotator{dir: dir, maxSize: 1 << 20, keep: 2, log: slog.New(slog.NewTextHandler(&logged, nil))}
	r.check()
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("the log on a full file system was not truncated: %v", sizeOrErr(fi, err))
	}
	if _, err := os.Lstat(path + ".1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a partial copy was left behind: %v", err)
	}
	if !strings.Contains(logged.String(), "without a copy") {
		t.Errorf("the lost copy was not logged: %s", logged.String())
	}
	// The writer goes on, at the start of the file, and the space is
	// there again: a second round of writing and rotation works the same.
	if _, err := w.WriteString("after\n"); err != nil {
		t.Fatalf("write after the rotation: %v", err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "after\n" {
		t.Fatalf("log after the rotation: %q, %v", data, err)
	}
	if _, err := w.Write(bytes.Repeat([]byte("y"), 1280<<10)); err != nil {
		t.Fatalf("the writer cannot fill the log again: %v", err)
	}
	// With the rotator running: the watch sees the next write and
	// truncates again.
	runRotator(t, r)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := w.WriteString("more\n"); err != nil {
			t.Fatalf("write: %v", err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running rotator did not truncate the full log within 5s (%d bytes)", fi.Size())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sizeOrErr(fi os.FileInfo, err error) any {
	if err != nil {
		return err
	}
	return strconv.FormatInt(fi.Size(), 10) + " bytes"
}
