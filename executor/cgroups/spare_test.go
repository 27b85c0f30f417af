package cgroups

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/testutil"
)

// spareFixture is a driver for the host's layout and a parent cgroup of
// the test's own, removed (with everything in it) in t.Cleanup.
func spareFixture(t *testing.T) (*cgroupfs, Layout, string) {
	t.Helper()
	testutil.RequireRoot(t)
	l, err := DetectLayout()
	if err != nil {
		testutil.SkipOrFail(t, "no cgroup hierarchy: %v", err)
	}
	d, err := NewCgroupfsAt(l)
	if err != nil {
		t.Fatal(err)
	}
	parent := "/" + testutil.Name(t, 50) + "-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, h := range d.(*cgroupfs).hs {
			if err := removeTree(ctx, filepath.Join(h.mount, parent)); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return d.(*cgroupfs), l, parent
}

// startForker starts a shell, killed with its children by process group
// in t.Cleanup, that forks two sleeps once it reads a line.
func startForker(t *testing.T) (*exec.Cmd, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "read x; sleep 600 & sleep 600 & wait")
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() {
		w.Close()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd, w
}

// cgroupOf reads pid's cgroup in the hierarchy h: for v1 the line naming
// its first controller, for cgroup2 the "0::" line.
func cgroupOf(t *testing.T, pid int, h hierarchy) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if h.names == nil && f[0] == "0" && f[1] == "" {
			return f[2]
		}
		for _, n := range strings.Split(f[1], ",") {
			if h.names != nil && n == h.names[0] {
				return f[2]
			}
		}
	}
	t.Fatalf("pid %d: no line for hierarchy %v in %q", pid, h, data)
	return ""
}

// A spare process placed ahead of time becomes a container's without a
// move on v1 (its cgroup is renamed, the limits set in it), and on a
// hybrid host's cgroup2 hierarchy it and what it forked meanwhile end up
// in the container's directory, the spare's removed. On a pure cgroup v2
// host nothing is placed (a cgroup2 directory cannot be renamed).
func TestRealSpareAdopt(t *testing.T) {
	d, l, parent := spareFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, line := startForker(t)
	pid := cmd.Process.Pid
	s, err := d.PlaceSpare(ctx, path.Join(parent, SpareName(1)), pid)
	if l.Mode() == ModeUnified {
		if s != nil || err != nil {
			t.Fatalf("PlaceSpare on a pure cgroup v2 host: %v, %v; want nothing placed", s, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range d.hs {
		if got := cgroupOf(t, pid, h); got != s.Path() {
			t.Errorf("placed spare in %s: cgroup %s, want %s", h.mount, got, s.Path())
		}
	}

	id := "adopt"
	m, err := d.Manager(id, path.Join(parent, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
		if err := m.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		for _, h := range d.hs {
			if _, err := os.Stat(filepath.Join(h.mount, parent, id)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after Destroy, %s/%s/%s: %v", h.mount, parent, id, err)
			}
		}
	})
	limit, pids := int64(64<<20), int64(50)
	res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, Pids: &specs.LinuxPids{Limit: &pids}}
	if err := m.(*fsManager).Adopt(ctx, s, res); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	line.WriteString("fork\n") // while the cgroup2 move may still run
	want := path.Join(parent, id)
	for _, h := range d.hs {
		if h.names != nil {
			if got := cgroupOf(t, pid, h); got != want {
				t.Errorf("adopted, in %s: cgroup %s, want %s (a rename, no move)", h.mount, got, want)
			}
		}
	}
	if got := readBack(t, m, "memory", "memory.limit_in_bytes"); got != strconv.FormatInt(limit, 10) {
		t.Errorf("memory.limit_in_bytes %s, want %d", got, limit)
	}
	if got := readBack(t, m, "pids", "pids.max"); got != "50" {
		t.Errorf("pids.max %s, want 50", got)
	}
	var procs []int
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs, err = m.Procs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		moved := len(procs) == 3
		for _, p := range procs {
			for _, h := range d.hs {
				moved = moved && cgroupOf(t, p, h) == want
			}
		}
		gone := true
		for _, h := range s.hs {
			if _, err := os.Stat(h.dir); !errors.Is(err, os.ErrNotExist) {
				gone = false
			}
		}
		if moved && gone {
			break
		}
		if time.Now().After(deadline) {
			for _, p := range procs {
				data, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cgroup")
				t.Logf("pid %d:\n%s", p, data)
			}
			t.Fatalf("10 s after Adopt: processes %v (want the shell and its two sleeps) not all in %s everywhere, or the spare cgroup is still there (gone: %v)", procs, want, gone)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// EndSweeps (a runtime that stops) moves at once what an Adopt left for
// later: when it returns, the adopted process is in the container's
// cgroup2 directory and the spare's is gone, so that a later Destroy from
// another process (`reconciled runtime delete` after the daemon stopped)
// leaves nothing behind.
func TestRealEndSweeps(t *testing.T) {
	d, l, parent := spareFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, _ := startForker(t)
	pid := cmd.Process.Pid
	s, err := d.PlaceSpare(ctx, path.Join(parent, SpareName(3)), pid)
	if err != nil {
		t.Fatal(err)
	}
	if l.Mode() == ModeUnified {
		// Nothing placed, nothing to move.
		if s != nil {
			t.Fatalf("PlaceSpare on a pure cgroup v2 host placed %s", s.Path())
		}
		if err := d.EndSweeps(ctx); err != nil {
			t.Fatalf("EndSweeps with nothing adopted: %v", err)
		}
		return
	}
	id := "ended"
	m, err := d.Manager(id, path.Join(parent, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
		// Another driver, as another process would have.
		other, err := NewCgroupfsAt(l)
		if err != nil {
			t.Fatal(err)
		}
		om, err := other.Manager(id, path.Join(parent, id))
		if err != nil {
			t.Fatal(err)
		}
		if err := om.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	if err := m.(*fsManager).Adopt(ctx, s, nil); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if err := d.EndSweeps(ctx); err != nil {
		t.Fatalf("EndSweeps: %v", err)
	}
	want := path.Join(parent, id)
	for _, h := range d.hs {
		if got := cgroupOf(t, pid, h); got != want {
			t.Errorf("after EndSweeps, in %s: cgroup %s, want %s", h.mount, got, want)
		}
	}
	for _, h := range s.hs {
		if _, err := os.Stat(h.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after EndSweeps, the spare's %s: %v (want it gone)", h.dir, err)
		}
	}
}

// Adopt changes nothing when the container's cgroup has another parent
// or exists already: the caller then moves the process (Apply).
func TestRealSpareNotAdoptable(t *testing.T) {
	d, l, parent := spareFixture(t)
	if l.Mode() == ModeUnified {
		if s, err := d.PlaceSpare(context.Background(), path.Join(parent, SpareName(2)), os.Getpid()); s != nil || err != nil {
			t.Fatalf("PlaceSpare on a pure cgroup v2 host: %v, %v; want nothing placed", s, err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, _ := startForker(t)
	pid := cmd.Process.Pid
	s, err := d.PlaceSpare(ctx, path.Join(parent, SpareName(2)), pid)
	if err != nil {
		t.Fatal(err)
	}
	other, err := d.Manager("x", path.Join(parent, "elsewhere", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.(*fsManager).Adopt(ctx, s, nil); !errors.Is(err, ErrNotAdoptable) {
		t.Errorf("Adopt into another parent: %v, want ErrNotAdoptable", err)
	}
	there, err := d.Manager("there", path.Join(parent, "there"))
	if err != nil {
		t.Fatal(err)
	}
	if err := there.Apply(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := there.(*fsManager).Adopt(ctx, s, nil); !errors.Is(err, ErrNotAdoptable) {
		t.Errorf("Adopt into an existing cgroup: %v, want ErrNotAdoptable", err)
	}
	for _, h := range d.hs {
		if got := cgroupOf(t, pid, h); got != s.Path() {
			t.Errorf("after refused adoptions, in %s: cgroup %s, want the spare's %s", h.mount, got, s.Path())
		}
	}
	// The caller's fallback: move, then remove the spare.
	if err := there.Apply(ctx, pid, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx); err != nil {
		t.Errorf("Remove after the move: %v", err)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	cmd.Wait()
	if err := there.Destroy(ctx); err != nil {
		t.Error(err)
	}
}

// RemoveStaleSpares removes the spare cgroups of a maker that no longer
// runs, keeps a running one's, and moves a container's process left in a
// stale spare's cgroup2 directory (a sweep cut short) to the container's.
func TestRealRemoveStaleSpares(t *testing.T) {
	d, l, parent := spareFixture(t)
	if l.Mode() == ModeUnified {
		t.Log("a pure cgroup v2 host places no spares: RemoveStaleSpares finds nothing")
		if err := d.RemoveStaleSpares(context.Background(), parent); err != nil {
			t.Fatal(err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stale := path.Join(parent, SparePrefix+"999999999-1-1") // no such PID
	live := path.Join(parent, SpareName(3))
	for _, p := range []string{stale, live} {
		for _, h := range d.hs {
			if _, err := mkdirs(h.mount, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	var cmd *exec.Cmd
	if u := l.Unified; u != "" {
		// A container's process, in its v1 cgroups, still in the stale
		// spare's cgroup2 directory.
		cmd, _ = startForker(t)
		m, err := d.Manager("ctr", path.Join(parent, "ctr"))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Apply(ctx, cmd.Process.Pid, nil); err != nil {
			t.Fatal(err)
		}
		if err := appendFile(filepath.Join(u, stale), "cgroup.procs", strconv.Itoa(cmd.Process.Pid)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
			m.Destroy(context.Background())
		})
	}
	if err := d.RemoveStaleSpares(ctx, parent); err != nil {
		t.Fatal(err)
	}
	for _, h := range d.hs {
		if _, err := os.Stat(filepath.Join(h.mount, stale)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale spare cgroup in %s: %v, want removed", h.mount, err)
		}
		if _, err := os.Stat(filepath.Join(h.mount, live)); err != nil {
			t.Errorf("a running maker's spare cgroup in %s: %v, want kept", h.mount, err)
		}
	}
	if cmd != nil {
		if got := cgroupOf(t, cmd.Process.Pid, hierarchy{mount: l.Unified}); got != path.Join(parent, "ctr") {
			t.Errorf("the container's process left in a stale spare: now in cgroup2 %s, want %s", got, path.Join(parent, "ctr"))
		}
	}
}

// A spare cgroup made with PrepareSpare holds nothing until its process
// joins it: cloned into its cgroup2 directory (OpenUnified, on a hybrid
// host) and writing 0 to each v1 tasks file (JoinFiles), a
// single-threaded process is then in it in every hierarchy, as PlaceSpare
// would have put it, and the cgroup is adopted as PlaceSpare's is.
func TestRealSpareJoinedByItsProcess(t *testing.T) {
	d, l, parent := spareFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := d.PrepareSpare(ctx, path.Join(parent, SpareName(1)))
	if l.Mode() == ModeUnified {
		if s != nil || err != nil {
			t.Fatalf("PrepareSpare on a pure cgroup v2 host: %v, %v; want nothing made", s, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.hs {
		if procs, err := readProcs(h.dir); err != nil || len(procs) != 0 {
			t.Errorf("prepared spare cgroup %s holds %v (%v), want nothing", h.dir, procs, err)
		}
	}
	unified, err := s.OpenUnified()
	if err != nil {
		t.Fatal(err)
	}
	if (unified != nil) != (l.Mode() == ModeHybrid) {
		t.Fatalf("OpenUnified on a %v host: %v, want a directory only on a hybrid one", l.Mode(), unified)
	}
	join := s.JoinFiles()
	if len(join) != len(s.hs)-btoi(unified != nil) {
		t.Fatalf("JoinFiles: %v, want one tasks file per v1 hierarchy (%d)", join, len(s.hs)-btoi(unified != nil))
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", `for f in "$@"; do echo 0 > "$f" || exit 1; done; echo joined; read x`, "sh"}, join...)...)
	cmd.Stdin = r
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if unified != nil {
		defer unified.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(unified.Fd())
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		w.Close()
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
	})
	buf := make([]byte, 7)
	if n, err := stdout.Read(buf); err != nil || string(buf[:n]) != "joined\n" {
		t.Fatalf("the shell did not join its cgroups: read %q, %v", buf[:n], err)
	}
	for _, h := range d.hs {
		if got := cgroupOf(t, pid, h); got != s.Path() {
			t.Errorf("joined spare in %s: cgroup %s, want %s", h.mount, got, s.Path())
		}
	}
	id := "joined"
	m, err := d.Manager(id, path.Join(parent, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
		if err := m.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	if err := m.(*fsManager).Adopt(ctx, s, nil); err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	for _, h := range d.hs {
		if h.names != nil {
			if got := cgroupOf(t, pid, h); got != path.Join(parent, id) {
				t.Errorf("adopted, in %s: cgroup %s, want %s", h.mount, got, path.Join(parent, id))
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Sweeps wait for a pause in adoptions (sweepQuiet), all on one timer:
// none starts while adoptions keep coming, all start once they stop, and
// one told to go now (Destroy) does not wait.
func TestSweepsWaitForQuiet(t *testing.T) {
	d := &cgroupfs{}
	adopt := func() time.Time {
		now := time.Now()
		d.lastAdopt.Store(now.UnixNano())
		return now
	}
	last := adopt()
	var released atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.waitQuiet(nil)
			released.Add(1)
		}()
	}
	now := make(chan struct{})
	early := make(chan struct{})
	go func() {
		d.waitQuiet(now)
		close(early)
	}()
	close(now)
	select {
	case <-early:
	case <-time.After(10 * time.Second):
		t.Fatal("a sweep told to go now still waits 10 s later")
	}
	// Adoptions every 5 ms for 300 ms: a sweep may start only if this
	// goroutine was kept from adopting for sweepQuiet.
	maxGap := time.Duration(0)
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
		now := adopt()
		maxGap = max(maxGap, now.Sub(last))
		last = now
	}
	if n := released.Load(); n > 0 && maxGap < sweepQuiet {
		t.Fatalf("%d sweeps started while cgroups were adopted at most %s apart", n, maxGap)
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("10 s after the last adoption, %d of 50 sweeps started", released.Load())
	}
	if waited := time.Since(last); waited < sweepQuiet {
		t.Errorf("the sweeps started %s after the last adoption, before the %s pause", waited, sweepQuiet)
	}
}
