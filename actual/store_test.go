package actual_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/testutil"
)

func TestMain(m *testing.M) {
	executor.MaybeRunStage()
	os.Exit(m.Run())
}

// Records survive a reopen; Forget removes them; a record file that cannot
// be parsed is reported and skipped.
func TestStoreRecords(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "containers")
	s, err := actual.OpenStore(filepath.Join(t.TempDir(), "runtime"), dir, actual.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := actual.Record{
		Applied:       &desired.Container{Name: "web", Hash: "h1", BaseHash: "b1", Source: "/m/web.yaml"},
		Restarts:      2,
		Failures:      1,
		StopRequested: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if err := s.Record(ctx, "web", rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, "db", actual.Record{Restarts: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(ctx, "never-recorded"); err != nil {
		t.Errorf("Forget of a missing record: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "web.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("record file: %v %v", fi.Mode(), err)
	}

	again, err := actual.OpenStore(filepath.Join(t.TempDir(), "runtime"), dir, actual.StoreOptions{})
	if !errors.Is(err, actual.ErrRecord) {
		t.Errorf("unparsable record not reported: %v", err)
	}
	got := again.Records()
	if len(got) != 1 {
		t.Fatalf("records after reopen: %+v", got)
	}
	w := got["web"]
	if w.Applied == nil || w.Applied.Hash != "h1" || w.Restarts != 2 || w.Failures != 1 || !w.StopRequested.Equal(rec.StopRequested) {
		t.Errorf("record after reopen: %+v", w)
	}
	// Nothing is created by opening, nor by observing an empty root.
	if set, err := again.Observe(ctx); err != nil || len(set) != 0 {
		t.Errorf("Observe of a missing root: %v %v", set, err)
	}
}

// A real container: observed created then running with its init verified,
// its spec hashes from its record; after kill -9, exited with 137 and no
// process left in its cgroup; with a cache, only after Invalidate.
func TestStoreObservesRealContainer(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	drv, err := cgroups.NewCgroupfs()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	root := filepath.Join(base, "runtime")
	rt, err := executor.New(root, executor.WithCgroups(drv))
	if err != nil {
		t.Fatal(err)
	}
	s, err := actual.OpenStore(root, filepath.Join(base, "containers"), actual.StoreOptions{CacheTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	id := testutil.Name(t, 40)
	if err := s.Record(ctx, id, actual.Record{Applied: &desired.Container{Name: id, Hash: "h", BaseHash: "b"}}); err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"/bin/sleep", "100000"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:    &specs.Root{Path: "/", Readonly: true},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
		}},
	}
	if err := rt.Create(ctx, id, t.TempDir(), executor.CreateOptions{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Delete(context.Background(), id, true); err != nil && !errors.Is(err, executor.ErrNotExist) {
			t.Errorf("delete: %v", err)
		}
	})
	observe := func() *actual.Container {
		t.Helper()
		set, err := s.Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := set[id]
		if c == nil || len(set) != 1 {
			t.Fatalf("observed %v", set)
		}
		return c
	}
	c := observe()
	if c.Status != actual.StatusCreated || !c.InitAlive || !c.Live() || c.Pid <= 0 || c.PidStartTime == 0 || c.SpecHash != "h" || c.BaseHash != "b" {
		t.Fatalf("created: %+v", c)
	}
	if err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if c := observe(); c.Status != actual.StatusCreated {
		t.Errorf("cached observation changed without Invalidate: %s", c.Status)
	}
	s.Invalidate(id)
	c = observe()
	if c.Status != actual.StatusRunning || !c.Live() || !c.CgroupHasProcs || c.Started.IsZero() {
		t.Fatalf("running: %+v", c)
	}
	if err := syscall.Kill(c.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	s.Invalidate(id)
	c = observe()
	if c.Live() || c.InitAlive || !c.Exited || c.ExitCode != 137 || c.CgroupHasProcs || c.Finished.IsZero() {
		t.Fatalf("after kill -9: %+v", c)
	}
}

// With a cache, what is changed behind the Store's back (no Invalidate) is
// seen once the TTL has passed: a start, a pause and a resume, a kill -9;
// a container created or deleted is seen at once.
func TestStoreCacheSeesChangesBehindItsBack(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	drv, err := cgroups.NewCgroupfs()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	root := filepath.Join(base, "runtime")
	rt, err := executor.New(root, executor.WithCgroups(drv))
	if err != nil {
		t.Fatal(err)
	}
	const ttl = time.Minute
	s, err := actual.OpenStore(root, filepath.Join(base, "containers"), actual.StoreOptions{CacheTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// The clock runs ahead, so that the state directories do not look
	// just changed (their stamps are trusted), and jumps past the TTL.
	now := time.Now().Add(10 * time.Second)
	actual.SetClock(s, func() time.Time { return now })
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"/bin/sleep", "100000"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:    &specs.Root{Path: "/", Readonly: true},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
		}},
	}
	create := func(id string) {
		t.Helper()
		if err := rt.Create(ctx, id, t.TempDir(), executor.CreateOptions{Spec: spec}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := rt.Delete(context.Background(), id, true); err != nil && !errors.Is(err, executor.ErrNotExist) {
				t.Errorf("delete %s: %v", id, err)
			}
		})
	}
	observe := func(id string) *actual.Container {
		t.Helper()
		set, err := s.Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return set[id]
	}
	id := testutil.Name(t, 40)
	create(id)
	if c := observe(id); c == nil || c.Status != actual.StatusCreated || !c.Live() {
		t.Fatalf("created: %+v", c)
	}

	if err := rt.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if c := observe(id); c.Status != actual.StatusCreated {
		t.Errorf("the cached observation changed within the TTL: %s", c.Status)
	}
	now = now.Add(ttl)
	if c := observe(id); c.Status != actual.StatusRunning || !c.Live() {
		t.Fatalf("started behind its back, after the TTL: %+v", c)
	}

	if err := rt.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	now = now.Add(ttl)
	if c := observe(id); !c.Paused || !c.Live() {
		t.Errorf("paused behind its back, after the TTL: %+v", c)
	}
	if err := rt.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	now = now.Add(ttl)
	if c := observe(id); c.Paused {
		t.Errorf("resumed behind its back, after the TTL: still paused")
	}

	if one, err := s.ObserveOne(ctx, id); err != nil || one == nil || *one != *observe(id) {
		t.Errorf("ObserveOne(%s) = %+v, %v; Observe has %+v", id, one, err, observe(id))
	}
	other := testutil.Name(t, 30) + "-2"
	if one, err := s.ObserveOne(ctx, other); one != nil || err != nil {
		t.Errorf("ObserveOne of a container not created yet: %+v, %v", one, err)
	}
	create(other)
	if c := observe(other); c == nil || c.Status != actual.StatusCreated {
		t.Errorf("created behind its back: %+v", c)
	}
	if err := rt.Delete(ctx, other, true); err != nil {
		t.Fatal(err)
	}
	if c := observe(other); c != nil {
		t.Errorf("deleted behind its back, still observed: %+v", c)
	}
	if one, err := s.ObserveOne(ctx, other); one != nil || err != nil {
		t.Errorf("ObserveOne of a deleted container: %+v, %v", one, err)
	}

	// The state file rewritten in place (no rename, so its directory is
	// as it was): truncated, it is unreadable after the TTL; put back, the
	// container is seen again. (Unreadable state reads as a container
	// being created, which the planner deletes and redoes.)
	statePath := filepath.Join(root, id, "state.json")
	good, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(statePath, 0); err != nil {
		t.Fatal(err)
	}
	now = now.Add(ttl)
	if c := observe(id); c == nil || c.Status != actual.StatusCreating || c.Live() {
		t.Errorf("state file truncated in place behind its back, after the TTL: %+v, want it unreadable (creating)", c)
	}
	if err := os.WriteFile(statePath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(ttl)
	if c := observe(id); c == nil || c.Status != actual.StatusRunning {
		t.Fatalf("state file put back: %+v", c)
	}

	c := observe(id)
	if err := syscall.Kill(c.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	now = now.Add(ttl)
	if c := observe(id); c.Live() || !c.Exited || c.ExitCode != 137 {
		t.Fatalf("killed behind its back, after the TTL: %+v", c)
	}
}
