package e2e

import (
	"context"
	"fmt"
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
	ctx := context.Background()
	rt, root, id := createWaiting(t, "")

	if ok, err := rt.RecoverStart(ctx, id); ok || err != nil {
		t.Fatalf("RecoverStart of a waiting container: %v, %v", ok, err)
	}
	releaseLikeStart(t, rt, root, id)
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
	st, err := rt.State(ctx, id)
	if err != nil || st.Status != executor.StatusRunning || !alive(st.Pid) {
		t.Fatalf("after RecoverStart: %+v, %v", st, err)
	}
}

// StartState (the daemon's start) of a container whose init exec'd already
// records it running without waiting and says it only recovered the start;
// on a container that waits it starts it and returns the running state.
func TestStartStateRecoversInterruptedStart(t *testing.T) {
	ctx := context.Background()
	rt, root, id := createWaiting(t, "")
	created, err := rt.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	releaseLikeStart(t, rt, root, id)
	// The exec is done when the init's executable is sleep's.
	sleep, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", created.Pid)); exe == sleep {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the init never exec'd %s", sleep)
		}
	}
	st, recovered, err := rt.StartState(ctx, id)
	if err != nil || !recovered || st.Status != executor.StatusRunning || st.Pid != created.Pid {
		t.Fatalf("StartState after the exec: %+v, recovered %v, %v; want running pid %d, recovered", st, recovered, err, created.Pid)
	}
	if onDisk, err := rt.State(ctx, id); err != nil || onDisk.Status != executor.StatusRunning {
		t.Fatalf("recorded state after StartState: %+v, %v", onDisk, err)
	}

	// Another name: two containers never share a cgroup.
	rt2, _, id2 := createWaiting(t, "-2")
	st, recovered, err = rt2.StartState(ctx, id2)
	if err != nil || recovered || st.Status != executor.StatusRunning || !alive(st.Pid) {
		t.Fatalf("StartState of a waiting container: %+v, recovered %v, %v; want running, not recovered", st, recovered, err)
	}
}

// createWaiting creates a container (sleep) named after the test and
// suffix that waits for start, deleted when the test ends.
func createWaiting(t *testing.T, suffix string) (*executor.Runtime, string, string) {
	t.Helper()
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
	id := testutil.Name(t, 40) + suffix
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

	return rt, root, id
}

// releaseLikeStart releases the init the way Start does, without recording
// anything, as a Start killed right after the exec would leave it.
func releaseLikeStart(t *testing.T, rt *executor.Runtime, root, id string) {
	t.Helper()
	fifo, err := os.Open(filepath.Join(executor.StateDir(root, id), "exec.fifo"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, fifo) // EOF once the init exec'd
	fifo.Close()
	st, err := rt.State(context.Background(), id)
	if err != nil || st.Status != executor.StatusCreated {
		t.Fatalf("state after the exec: %v, %v", st.Status, err)
	}
}
