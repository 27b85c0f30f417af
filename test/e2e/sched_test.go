package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/testutil"
)

// threadsSched checks that every thread of pid has policy and nice.
func threadsSched(t *testing.T, what string, pid, policy, nice int) {
	t.Helper()
	tids, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for _, e := range tids {
		tid, _ := strconv.Atoi(e.Name())
		a, err := unix.SchedGetAttr(tid, 0)
		if errors.Is(err, unix.ESRCH) {
			continue // a thread that ended meanwhile
		}
		if err != nil {
			t.Fatalf("%s: sched_getattr %d: %v", what, tid, err)
		}
		if int(a.Policy) != policy || int(a.Nice) != nice {
			t.Errorf("%s (pid %d), thread %d: policy %d nice %d, want policy %d nice %d", what, pid, tid, a.Policy, a.Nice, policy, nice)
		}
	}
}

// The daemon's threads run SCHED_BATCH, its nice value kept; what it
// starts for containers runs as it was started: a daemon started with
// nice 4 runs a native container (with the runner init, and with the Go
// init), a runc one and an exec probe's command SCHED_OTHER at nice 4, as
// they would have run before.
func TestSchedulingAsStarted(t *testing.T) {
	testutil.RequireBinary(t, "runc")
	for _, goInit := range []bool{false, true} {
		name := "runner init"
		if goInit {
			name = "Go init"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.wrap = []string{"nice", "-n", "4"}
			if goInit {
				e.wrap = append([]string{"env", executor.GoInitEnv + "=1"}, e.wrap...)
			}
			e.start()
			native := e.name("native")
			e.write("native.yaml", probeManifest(native, sleepForever,
				"  health: {exec: [/bin/sh, -c, \"cat /proc/self/stat > /tmp/probe.new && mv /tmp/probe.new /tmp/probe.stat\"], interval: 200ms, timeout: 5s, retries: 1}\n"))
			var web string
			if !goInit {
				web = e.name("web")
				e.write("web.yaml", ociManifest(web, "runc", testutil.BusyboxRootfs(t), sleepForever))
			}
			nat := e.waitHealth(native, "healthy", 30*time.Second)

			threadsSched(t, "the daemon", e.daemon.Process.Pid, 3, 4)
			threadsSched(t, "the native container's process", nat.Pid, 0, 4)
			if web != "" {
				threadsSched(t, "the runc container's process", e.waitRunning(web, 30*time.Second).Pid, 0, 4)
			}
			// The probe runs every 200 ms: each run writes its record
			// aside and renames it, so a read never meets one half written.
			stat, err := os.ReadFile(inContainer(nat.Pid, "/tmp/probe.stat"))
			if err != nil {
				t.Fatalf("the exec probe's record: %v", err)
			}
			if p, n, _, err := testutil.StatSched(string(stat)); err != nil || p != 0 || n != 4 {
				t.Errorf("the exec probe's command: policy %d nice %d (%v), want policy 0 nice 4", p, n, err)
			}
		})
	}
}
