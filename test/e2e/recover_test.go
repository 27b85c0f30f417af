package e2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/testutil"
)

// A start cut short after the init exec'd (the daemon was killed between
// the exec and recording it) leaves a container recorded as created whose
// process runs: RecoverStart records it running; on a container that really
// waits for start it does nothing.
func TestRecoverInterruptedStart(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := context.Background()
	drv, err := cgroups.NewCgroupfs()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "runtime")
	rt, err := executor.New(root, executor.WithCgroups(drv))
	if err != nil {
		t.Fatal(err)
	}
	id := testutil.Name(t, 40)
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"/bin/sleep", "100000"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:    &specs.Root{Path: "/", Readonly: true},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
		}},
	}
	bundle := t.TempDir()
	if err := rt.Create(ctx, id, bundle, executor.CreateOptions{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Delete(context.Background(), id, true); err != nil {
			t.Errorf("delete: %v", err)
		}
	})

	if ok, err := rt.RecoverStart(ctx, id); ok || err != nil {
		t.Fatalf("RecoverStart of a waiting container: %v, %v", ok, err)
	}
	// Release the init the way Start does, without recording anything, as
	// a Start killed right after the exec would leave it.
	fifo, err := os.Open(filepath.Join(executor.StateDir(root, id), "exec.fifo"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, fifo) // EOF once the init exec'd
	fifo.Close()
	st, err := rt.State(ctx, id)
	if err != nil || st.Status != executor.StatusCreated {
		t.Fatalf("state after the exec: %v, %v", st.Status, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := rt.RecoverStart(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("RecoverStart never saw the exec")
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, err = rt.State(ctx, id)
	if err != nil || st.Status != executor.StatusRunning || !alive(st.Pid) {
		t.Fatalf("after RecoverStart: %+v, %v", st, err)
	}
}
