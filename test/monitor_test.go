package test

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/testutil"
)

// A created container's monitor is the machine-code reaper from its start
// (no Go runtime starts for it): ps shows one thread named for its
// container, running the sealed reaper memfd, and it records how the
// container ended as the Go monitor did.
func TestMachineMonitor(t *testing.T) {
	if !waiter.ReaperAvailable() {
		t.Skip("no reaper on this architecture: the monitor is a Go process")
	}
	r := newRT(t)
	id := testutil.Name(t, 40)
	r.cleanup(id)
	r.ok("create", "--bundle", bundle(t, nil, "sh", "-c", "exit 7"), id)
	st := r.state(id)
	mon := strconv.Itoa(st.MonitorPid)
	exe, err := os.Readlink("/proc/" + mon + "/exe")
	if err != nil || !strings.Contains(exe, "memfd:reconciled-reaper") {
		t.Errorf("monitor %s runs %q (%v), want the reaper memfd", mon, exe, err)
	}
	// It titles itself when the create tells it it is created, the last
	// thing a create does.
	var cmdline []byte
	titled := func() bool {
		cmdline, _ = os.ReadFile("/proc/" + mon + "/cmdline")
		args := bytes.Split(cmdline, []byte{0})
		return len(args) >= 2 && string(args[0]) == "reconciled-monitor" && string(bytes.TrimRight(args[1], " \x00")) == id
	}
	for deadline := time.Now().Add(5 * time.Second); !titled() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if !titled() {
		t.Errorf("monitor %s cmdline %q, want reconciled-monitor %s", mon, cmdline, id)
	}
	// The Go monitor execs the reaper too once the container is created,
	// with no environment; the machine monitor keeps the one it started
	// with.
	env, _ := os.ReadFile("/proc/" + mon + "/environ")
	if !bytes.HasPrefix(env, []byte(waiter.MonitorEnv+"=")) {
		t.Errorf("monitor %s was not started as the machine monitor: environment %q", mon, env)
	}
	status, _ := os.ReadFile("/proc/" + mon + "/status")
	if !bytes.Contains(status, []byte("\nThreads:\t1\n")) {
		t.Errorf("monitor %s is not one thread:\n%s", mon, status)
	}
	r.ok("start", id)
	st = waitState(t, r, id, executor.StatusStopped)
	if st.ExitCode != 7 || st.ExitSignal != "" {
		t.Errorf("exit recorded: code %d signal %q, want 7", st.ExitCode, st.ExitSignal)
	}
}
