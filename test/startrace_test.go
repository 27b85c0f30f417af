package test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/testutil"
)

// Start right after Create (what the daemon and `run` do) must release the
// process every time, whatever stage the init is in: still the Go init, or
// already the waiter. A start that mistook the waiter for the user's
// program recorded the container running while the process never ran; Wait
// then hung. Many rounds, as the window is small.
func TestStartRightAfterCreate(t *testing.T) {
	r := newRT(t)
	b := bundle(t, nil, "true")
	api, err := executor.New(r.root, executor.WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("startrace-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := api.Create(ctx, id, b, executor.CreateOptions{}); err != nil {
			cancel()
			t.Fatalf("round %d: create: %v", i, err)
		}
		t.Cleanup(func() { api.Delete(context.Background(), id, true) })
		if err := api.Start(ctx, id); err != nil {
			cancel()
			t.Fatalf("round %d: start: %v", i, err)
		}
		st, err := api.Wait(ctx, id)
		cancel()
		if err != nil {
			t.Fatalf("round %d: the process did not run to its end after start: %v", i, err)
		}
		if !st.Exited || st.ExitCode != 0 {
			t.Fatalf("round %d: %+v, want exited 0", i, st)
		}
		if err := api.Delete(context.Background(), id, false); err != nil {
			t.Fatalf("round %d: delete: %v", i, err)
		}
	}
}

// A created container whose init waits on the exec fifo as the waiter
// (the Go init's end) or as the runner init has not started: RecoverStart
// (what Start does first) must leave it alone, and a real start must then
// run the process.
func TestWaiterIsNotAStartedProcess(t *testing.T) {
	if !waiter.Available() {
		testutil.SkipOrFail(t, "no waiter on this architecture")
	}
	for _, c := range []struct {
		name, goInit, exe string
	}{
		{"runner-init", "", "memfd:reconciled-setup"},
		{"go-init", "1", "memfd:reconciled-waiter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(executor.GoInitEnv, c.goInit)
			waitingIsNotStarted(t, c.exe)
		})
	}
}

func waitingIsNotStarted(t *testing.T, waitingExe string) {
	r := newRT(t)
	b := bundle(t, nil, "true")
	api, err := executor.New(r.root, executor.WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := api.Create(ctx, "waiting", b, executor.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Delete(context.Background(), "waiting", true) })
	st, err := api.State(ctx, "waiting")
	if err != nil {
		t.Fatal(err)
	}
	waitInitExe(t, st.Pid, waitingExe)
	recovered, err := api.RecoverStart(ctx, "waiting")
	if err != nil || recovered {
		t.Fatalf("RecoverStart of a waiting container: %v, %v; want false, nil", recovered, err)
	}
	if st, _ := api.State(ctx, "waiting"); st.Status != executor.StatusCreated {
		t.Fatalf("status %s after RecoverStart, want created", st.Status)
	}
	if err := api.Start(ctx, "waiting"); err != nil {
		t.Fatal(err)
	}
	if st, err := api.Wait(ctx, "waiting"); err != nil || !st.Exited || st.ExitCode != 0 {
		t.Fatalf("after start: %+v, %v; want exited 0", st, err)
	}
}

// waitInitExe waits, 5s at most, until a created container's init pid
// runs want (a part of its /proc/PID/exe). The Go init reports ready and
// then replaces itself with the waiter (init.go, execWaiter): a create can
// return a moment before that exec, while the init still runs the
// runtime's read-only copy (its exe reads "/").
func waitInitExe(t *testing.T, pid int, want string) {
	t.Helper()
	exe := "/proc/" + strconv.Itoa(pid) + "/exe"
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		link, err := os.Readlink(exe)
		if err == nil && strings.Contains(link, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the created container's init runs %q (%v) 5s after the create, want %s", link, err, want)
		}
	}
}
