package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fillFS writes path until the filesystem holding it has no space left.
func fillFS(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			break
		}
	}
	// Small writes too, until not even a byte fits.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
}

// Faults lose nothing: with the state and log directories on a full
// filesystem, a container whose manifest is removed is still stopped and
// removed (acting never waits on a successful write), and a container that
// dies cannot be recreated until space returns, when it is recreated by
// itself, with no operator action.
func TestFullDisk(t *testing.T) {
	// A small tmpfs of the test's own holds the daemon's state and logs.
	// Registered before newEnv, so it is unmounted after the env's
	// cleanup (which needs the state to delete what is left).
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=16m,mode=0700"); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		for unix.Unmount(mnt, unix.MNT_DETACH) == nil {
		}
	})
	e := newEnv(t)
	e.state, e.logDir = filepath.Join(mnt, "state"), filepath.Join(mnt, "logs")
	e.start()
	keep, gone := e.name("keep"), e.name("gone")
	e.write("keep.yaml", manifest(keep, sleepForever, ""))
	e.write("gone.yaml", manifest(gone, sleepForever, ""))
	kept := e.waitRunning(keep, 30*time.Second)
	g := e.waitRunning(gone, 30*time.Second)

	filler := filepath.Join(mnt, "filler")
	fillFS(t, filler)

	// Removing a manifest stops and removes its container on a full disk.
	e.deleteGone("gone.yaml", gone, g.Pid)

	// A container that dies while the disk is full (filled again: the
	// removal freed what the other container had) is recreated when what
	// its old copy held is freed, or says why it cannot be and keeps
	// trying.
	fillFS(t, filler+"2")
	if err := unix.Kill(kept.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitFor(keep+" recreated or failing for lack of space", 30*time.Second, func(r *report) bool {
		c := r.Get(keep)
		return c != nil && c.Pid != kept.Pid && (strings.Contains(c.Message, "no space left") || (c.Pid > 0 && alive(c.Pid)))
	})

	// Space returns: the daemon catches up by itself.
	for _, f := range []string{filler, filler + "2"} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	c := e.waitRunning(keep, 60*time.Second)
	if c.Pid == kept.Pid || !alive(c.Pid) {
		t.Errorf("%s after space returned: pid %d (was %d)", keep, c.Pid, kept.Pid)
	}
}
