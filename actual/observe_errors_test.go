package actual_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/proc"
)

// fakeContainer writes, under root, the executor state of container name
// as the executor writes it: status, init (pid, start), cgroup paths. It
// is a fake (no runtime made it), so that its init can be this test's own
// process and its cgroup a directory of plain files.
func fakeContainer(t *testing.T, root, name string, pid int, start uint64, cgroup string) {
	t.Helper()
	dir := executor.StateDir(root, name)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	st := executor.State{OCIVersion: "1.0.2", ID: name, Status: executor.StatusRunning, Pid: pid, PidStartTime: start,
		Bundle: t.TempDir(), Created: time.Now(), Started: time.Now(), CgroupPaths: map[string]string{"": cgroup}}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeCgroup is a directory of the files the Store reads in a unified
// cgroup: cgroup.procs (holding this process) and cgroup.freeze.
func fakeCgroup(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for f, content := range map[string]string{"cgroup.procs": "1\n", "cgroup.freeze": "0\n"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// exhaustFDs fills this process's descriptor table but for spare free
// slots (RLIMIT_NOFILE is lowered to 1024 meanwhile, so that this is
// quick). release gives everything back; call it before anything that
// reports (t.Fatal and the like).
func exhaustFDs(t *testing.T, spare int) (release func()) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = min(lim.Cur, 1024)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var fds []int
	release = func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
		fds = nil
		unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	}
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EMFILE) {
			break
		}
		if err != nil {
			release()
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	for range spare {
		unix.Close(fds[len(fds)-1])
		fds = fds[:len(fds)-1]
	}
	return release
}

type observation struct {
	c   *actual.Container
	err error
}

// With no descriptor left (EMFILE), observing a running container fails:
// it is never read as half-created, nor as an init that died. With one
// left (taken by the pidfd a caching Store pins the init with), the
// check of the init fails the same way. Once descriptors are back, the
// container is observed running, as it was all along.
func TestObserveFailureIsNotDeath(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "runtime")
	start, _, err := proc.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	fakeContainer(t, root, "web", os.Getpid(), start, fakeCgroup(t))

	for _, tc := range []struct {
		name  string
		ttl   time.Duration
		spare int
	}{
		{"no descriptor left", 0, 0},
		{"no descriptor left, cached", time.Hour, 0},
		{"one left for the pidfd", time.Hour, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := actual.OpenStore(root, filepath.Join(t.TempDir(), "containers"), actual.StoreOptions{CacheTTL: tc.ttl})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			release := exhaustFDs(t, tc.spare)
			var one observation
			one.c, one.err = s.ObserveOne(ctx, "web")
			s.Invalidate("web")
			set, setErr := s.Observe(ctx)
			release()

			if one.err == nil {
				t.Errorf("ObserveOne out of descriptors: no error, observed %+v", one.c)
			} else if !errors.Is(one.err, syscall.EMFILE) {
				t.Errorf("ObserveOne out of descriptors: %v, want EMFILE", one.err)
			}
			if setErr == nil {
				t.Errorf("Observe out of descriptors: no error, observed %+v", set["web"])
			}

			s.Invalidate("web")
			c, err := s.ObserveOne(ctx, "web")
			if err != nil || c == nil || !c.Live() || c.Status != actual.StatusRunning || !c.CgroupHasProcs {
				t.Fatalf("with descriptors again: %+v, %v", c, err)
			}
		})
	}
}

// Only evidence says an init is dead or a cgroup empty: a /proc entry with
// another start time, a cgroup that is gone. A cgroup file that cannot be
// read (here a directory: EISDIR) fails the observation instead of reading
// as "no process left" or "not paused".
func TestObserveCgroupReadFailure(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "runtime")
	start, _, err := proc.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	s, err := actual.OpenStore(root, filepath.Join(t.TempDir(), "containers"), actual.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Positive evidence, no error: another start time under the PID and
	// a cgroup that is gone; the same with a cgroup that holds a process.
	fakeContainer(t, root, "reused", os.Getpid(), start+1, filepath.Join(t.TempDir(), "gone"))
	if c, err := s.ObserveOne(ctx, "reused"); err != nil || c == nil || c.InitAlive || c.Live() || c.CgroupHasProcs {
		t.Errorf("init whose PID was reused, cgroup gone: %+v, %v", c, err)
	}
	fakeContainer(t, root, "leftovers", os.Getpid(), start+1, fakeCgroup(t))
	if c, err := s.ObserveOne(ctx, "leftovers"); err != nil || c == nil || c.InitAlive || !c.CgroupHasProcs {
		t.Errorf("init gone, its cgroup holding a process: %+v, %v", c, err)
	}

	// cgroup.procs unreadable, init gone: not "the cgroup is empty".
	unreadable := fakeCgroup(t)
	if err := os.Remove(filepath.Join(unreadable, "cgroup.procs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(unreadable, "cgroup.procs"), 0o755); err != nil {
		t.Fatal(err)
	}
	fakeContainer(t, root, "procs", os.Getpid(), start+1, unreadable)
	if c, err := s.ObserveOne(ctx, "procs"); err == nil || !errors.Is(err, syscall.EISDIR) {
		t.Errorf("unreadable cgroup.procs: %+v, %v; want EISDIR", c, err)
	}

	// cgroup.freeze unreadable, init alive: not "not paused".
	unfreezable := fakeCgroup(t)
	if err := os.Remove(filepath.Join(unfreezable, "cgroup.freeze")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(unfreezable, "cgroup.freeze"), 0o755); err != nil {
		t.Fatal(err)
	}
	fakeContainer(t, root, "freeze", os.Getpid(), start, unfreezable)
	if c, err := s.ObserveOne(ctx, "freeze"); err == nil || !errors.Is(err, syscall.EISDIR) {
		t.Errorf("unreadable cgroup.freeze: %+v, %v; want EISDIR", c, err)
	}
	if _, err := s.Observe(ctx); err == nil {
		t.Error("Observe with containers that cannot be observed: no error")
	}

	// A state file that is there but makes no sense (half-written) is
	// still a container being created.
	if err := os.WriteFile(filepath.Join(executor.StateDir(root, "freeze"), "state.json"), []byte(`{"status":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := s.ObserveOne(ctx, "freeze"); err != nil || c == nil || c.Status != actual.StatusCreating {
		t.Errorf("half-written state: %+v, %v", c, err)
	}
}
