package executor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/testutil"
)

// countingFreezer is a real cgroup manager that counts its Freeze calls.
type countingFreezer struct {
	cgroups.Manager
	freezes atomic.Int32
}

func (c *countingFreezer) Freeze(ctx context.Context, frozen bool) error {
	c.freezes.Add(1)
	return c.Manager.Freeze(ctx, frozen)
}

// KillContainer with SIGKILL kills every process of a container: one with
// a PID namespace of its own through its init alone, its cgroup never
// frozen (a freeze and a thaw each patch the kernel's text on cgroup v1);
// one in the host's PID namespace through the frozen cgroup, whose
// processes the init's death leaves behind.
func TestKillContainer(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	drv, err := cgroups.NewCgroupfs()
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(filepath.Join(t.TempDir(), "state"), WithCgroups(drv), WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		ownPIDs bool
	}{{"own-pid-namespace", true}, {"host-pid-namespace", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
			if tc.ownPIDs {
				ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
			}
			spec := &specs.Spec{
				Version: specs.Version,
				Process: &specs.Process{Args: []string{"sh", "-c", "sleep 1000 & sleep 1001 & wait"}, Cwd: "/", Env: []string{"PATH=/bin"}},
				Root:    &specs.Root{Path: rootfs},
				Linux:   &specs.Linux{Namespaces: ns},
			}
			id := fmt.Sprintf("%s-%d", testutil.Name(t, 30), os.Getpid())
			t.Cleanup(func() {
				if err := r.Delete(context.Background(), id, true); err != nil {
					t.Errorf("delete: %v", err)
				}
			})
			if err := r.Create(ctx, id, filepath.Dir(rootfs), CreateOptions{Spec: spec}); err != nil {
				t.Fatal(err)
			}
			if err := r.Start(ctx, id); err != nil {
				t.Fatal(err)
			}
			st, err := r.State(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			m, err := r.cgroupOf(st)
			if err != nil || m == nil {
				t.Fatalf("cgroup of %s: %v", id, err)
			}
			var pids []int
			for deadline := time.Now().Add(10 * time.Second); len(pids) < 3; time.Sleep(10 * time.Millisecond) {
				if pids, err = m.Procs(ctx); err != nil || time.Now().After(deadline) {
					t.Fatalf("processes of the container: %v %v, want the shell and two sleeps", pids, err)
				}
			}
			counted := &countingFreezer{Manager: m}
			n, err := KillContainer(ctx, st, counted, unix.SIGKILL, nil)
			if err != nil || n < 1 {
				t.Fatalf("KillContainer: %d signalled, %v", n, err)
			}
			if tc.ownPIDs {
				// The namespace is gone when it returns.
				for _, p := range pids {
					if proc.Exists(p) {
						t.Errorf("process %d of %v runs after KillContainer", p, pids)
					}
				}
				if f := counted.freezes.Load(); f != 0 {
					t.Errorf("the cgroup was frozen or thawed %d times; the init's death kills its PID namespace", f)
				}
			} else {
				for deadline := time.Now().Add(5 * time.Second); slices.ContainsFunc(pids, proc.Exists); time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("processes %v still run 5 s after KillContainer", slices.DeleteFunc(pids, func(p int) bool { return !proc.Exists(p) }))
					}
				}
				if f := counted.freezes.Load(); f < 2 {
					t.Errorf("the cgroup was frozen or thawed %d times, want a freeze and a thaw: the init's children outlive it", f)
				}
			}
			if left, err := m.Procs(ctx); err != nil || len(left) > 0 {
				t.Errorf("cgroup after KillContainer: %v %v", left, err)
			}
		})
	}
}
