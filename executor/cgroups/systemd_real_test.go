package cgroups

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/test/systemdtest"
)

// TestSystemdDriver runs against a real systemd 252, PID 1 of a sandbox
// (test/systemdtest): one sandbox for all its subtests.
func TestSystemdDriver(t *testing.T) {
	if systemdtest.Reexec(t) {
		return
	}
	sb := systemdtest.Current(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if !SystemdAvailable(ctx) {
		t.Fatal("SystemdAvailable() = false inside the sandbox, where systemd is PID 1")
	}
	auto, err := NewAuto(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if auto.Name() != "systemd" {
		t.Errorf("NewAuto picked %q with systemd as PID 1", auto.Name())
	}
	auto.(*Systemd).Close()

	t.Run("Scope", func(t *testing.T) { testSystemdScope(t, sb) })
	t.Run("LeftoverFailedUnit", func(t *testing.T) { testSystemdLeftover(t, sb) })
	t.Run("StopFromOutside", func(t *testing.T) { testSystemdStopOutside(t, sb) })
	t.Run("ReexecDuringStopJob", func(t *testing.T) { testSystemdReexecDuringJob(t, sb) })
	t.Run("OneConnection", testSystemdOneConnection)
	t.Run("FailedStartLeavesNothing", testSystemdFailedStart)
}

// A start that fails after Apply joined the hierarchies systemd never
// manages (the pid exits in between: systemd refuses a scope with no live
// pid) returns the error, and Destroy leaves neither unit nor directory.
func testSystemdFailedStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, _ := newSystemdDriver(t, ctx)
	id := testutil.Name(t, 50)
	mm, err := d.Manager(id, "")
	if err != nil {
		t.Fatal(err)
	}
	m := mm.(*systemdManager)
	pid, done := startSleep(t)
	early, err := m.joinUnmanaged(pid, joinNever, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.d.layout.Mode() != ModeUnified && m.fs().dirOf("freezer") != "" {
		if !slices.Contains(early, m.fs().dirOf("freezer")) {
			t.Errorf("joined before the start: %v; want the freezer's %s among them", early, m.fs().dirOf("freezer"))
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	<-done
	if err := m.Apply(ctx, pid, nil); err == nil {
		t.Fatalf("Apply with pid %d gone succeeded", pid)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Fatalf("Destroy after the failed Apply: %v", err)
	}
	for _, h := range m.fs().hs {
		if exists(h.dir) {
			t.Errorf("%s is left after Destroy", h.dir)
		}
	}
	if st, err := m.activeState(ctx); err != nil || (st != "" && st != "inactive") {
		t.Errorf("unit %s after Destroy: %q, %v; want gone", m.unit, st, err)
	}
}

// startScope starts `sleep 300` in container id's scope (Apply without
// resources), destroyed when the test ends, and returns its PID; the error
// is Apply's.
func startScope(t *testing.T, ctx context.Context, d *Systemd, id string) (int, error) {
	t.Helper()
	m, err := d.Manager(id, "")
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := startSleep(t)
	t.Cleanup(func() {
		if err := m.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy in cleanup: %v", err)
		}
	})
	return pid, m.Apply(ctx, pid, nil)
}

// socketFds counts this process's open sockets.
func socketFds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// The driver talks to systemd over one connection, calls and signals
// alike (systemd sends every signal to every connection on its private
// socket), and a scope's start still completes on it.
func testSystemdOneConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := socketFds(t)
	d, _ := newSystemdDriver(t, ctx)
	if _, err := startScope(t, ctx, d, testutil.Name(t, 50)); err != nil {
		t.Fatal(err)
	}
	if got := socketFds(t) - before; got != 1 {
		t.Errorf("the driver holds %d sockets after starting a scope, want 1", got)
	}
}

// logBuffer collects the driver's log for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newSystemdDriver(t *testing.T, ctx context.Context) (*Systemd, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	d, err := NewSystemd(ctx, WithSystemdLogger(slog.New(slog.NewTextHandler(logs, nil))),
		WithDescription(func(id string) string { return "test container " + id }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, logs
}

// startSleep starts `sleep 300`, killed by PID in t.Cleanup. done receives
// its exit status.
func startSleep(t *testing.T) (pid int, done <-chan error) {
	t.Helper()
	return startProcess(t, "sleep", "300")
}

// startProcess starts name with args, killed by PID in t.Cleanup. done
// receives its exit status.
func startProcess(t *testing.T, name string, args ...string) (pid int, done <-chan error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	t.Cleanup(func() {
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Errorf("killing sleep %d: %v", cmd.Process.Pid, err)
		}
	})
	return cmd.Process.Pid, ch
}

// waitIgnores waits until process pid ignores sig (SigIgn in its status).
func waitIgnores(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatalf("process %d: %v", pid, err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if hex, ok := strings.CutPrefix(l, "SigIgn:"); ok {
				mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
				if err != nil {
					t.Fatalf("process %d: SigIgn %q: %v", pid, hex, err)
				}
				if mask&(1<<(sig-1)) != 0 {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d does not ignore %v after 10s", pid, sig)
		}
	}
}

// show runs `systemctl show -p props unit` inside the sandbox.
func show(t *testing.T, sb *systemdtest.Sandbox, unit string, props ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := sb.Exec(ctx, "systemctl", "show", "-p", strings.Join(props, ","), unit)
	if err != nil {
		t.Fatalf("systemctl show %s: %v\n%s", unit, err, out)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		if m[k] != "" {
			v = m[k] + "\n" + v // DeviceAllow: one line per entry
		}
		m[k] = v
	}
	return m
}

// wantShow checks systemctl show's values.
func wantShow(t *testing.T, sb *systemdtest.Sandbox, unit string, want map[string]string) {
	t.Helper()
	var props []string
	for k := range want {
		props = append(props, k)
	}
	got := show(t, sb, unit, props...)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("systemctl show -p %s %s = %q, want %q", k, unit, got[k], v)
		}
	}
}

// procCgroups maps each hierarchy of /proc/PID/cgroup to pid's cgroup.
func procCgroups(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		m[parts[1]] = parts[2]
	}
	return m
}

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }
func waitExit(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: the process did not exit", what)
		return nil
	}
}

func testSystemdScope(t *testing.T, sb *systemdtest.Sandbox) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, logs := newSystemdDriver(t, ctx)
	id := testutil.Name(t, 50)
	unit := "reconciled-" + id + ".scope"
	m, err := d.Manager(id, "")
	if err != nil {
		t.Fatal(err)
	}
	h := startHelper(t, "cmd")
	pid := h.pid()
	t.Cleanup(func() {
		if err := m.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy in cleanup: %v", err)
		}
	})
	r := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},
			{Allow: true, Type: "c", Major: i64(136), Access: "rw"},
		},
		Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(64 << 20)},
		CPU:    &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Period: u64(100000)},
		Pids:   &specs.LinuxPids{Limit: i64(64)},
	}
	if err := m.Apply(ctx, pid, r); err != nil {
		t.Fatal(err)
	}

	// What `systemctl show` says.
	wantShow(t, sb, unit, map[string]string{
		"Slice": "reconciled.slice", "Delegate": "yes", "ActiveState": "active",
		"Description": "test container " + id, "ControlGroup": "/reconciled.slice/" + unit,
		"MemoryLimit": "67108864", "CPUShares": "512", "TasksMax": "64", "CPUQuotaPerSecUSec": "500ms",
		"MemoryAccounting": "yes", "CPUAccounting": "yes", "TasksAccounting": "yes",
		"DevicePolicy": "strict",
	})
	if got := show(t, sb, unit, "DeviceAllow")["DeviceAllow"]; !strings.Contains(got, "/dev/char/1:3 rwm") || !strings.Contains(got, "char-pts rw") {
		t.Errorf("DeviceAllow = %q, want /dev/char/1:3 rwm and char-pts rw", got)
	}
	// Where the process is: the scope, in every hierarchy the driver
	// reads or limits through.
	cgs := procCgroups(t, pid)
	for h, cg := range cgs {
		if cg != "/reconciled.slice/"+unit {
			t.Errorf("/proc/%d/cgroup: %q hierarchy: %q, want /reconciled.slice/%s (all: %v)", pid, h, cg, unit, cgs)
		}
	}
	t.Logf("/proc/%d/cgroup: %v", pid, cgs)
	// What the kernel enforces.
	for _, c := range []struct{ key, file, want string }{
		{"memory", "memory.limit_in_bytes", "67108864"},
		{"memory", "memory.memsw.limit_in_bytes", "67108864"},
		{"cpu", "cpu.shares", "512"},
		{"cpu", "cpu.cfs_quota_us", "50000"},
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"pids", "pids.max", "64"},
	} {
		if got := readBack(t, m, c.key, c.file); got != c.want {
			t.Errorf("%s = %q, want %q", c.file, got, c.want)
		}
	}
	devs := readBack(t, m, "devices", "devices.list")
	for _, want := range []string{"c 1:3 rwm", "c 136:* rw"} {
		if !slices.Contains(strings.Split(devs, "\n"), want) {
			t.Errorf("devices.list = %q, want a line %q", devs, want)
		}
	}
	if slices.Contains(strings.Split(devs, "\n"), "a *:* rwm") {
		t.Errorf("devices.list = %q: everything allowed", devs)
	}
	if pids, err := m.Procs(ctx); err != nil || !slices.Equal(pids, []int{pid}) {
		t.Errorf("Procs() = %v, %v; want [%d]", pids, err, pid)
	}

	// Set: live through SetUnitProperties, both read back.
	if err := m.Set(ctx, &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(128 << 20), Swap: i64(128 << 20)},
		Pids:   &specs.LinuxPids{Limit: i64(100)},
	}); err != nil {
		t.Fatal(err)
	}
	wantShow(t, sb, unit, map[string]string{"MemoryLimit": "134217728", "TasksMax": "100", "CPUShares": "512"})
	if got := readBack(t, m, "memory", "memory.limit_in_bytes"); got != "134217728" {
		t.Errorf("after Set: memory.limit_in_bytes = %q", got)
	}
	if got := readBack(t, m, "pids", "pids.max"); got != "100" {
		t.Errorf("after Set: pids.max = %q", got)
	}
	// v1 charges what a process allocates after it moved in.
	if got := h.ask("alloc 8"); got != "ok" {
		t.Fatalf("helper alloc: %s", got)
	}
	st, err := m.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryLimit != 128<<20 || st.PidsLimit != 100 || st.PidsCurrent == 0 || st.MemoryUsage < 8<<20 || st.CPUUsageNanos == 0 {
		t.Errorf("Stats() = %+v; want limit 128 MiB, some of 100 tasks, 8 MiB or more used, some CPU", st)
	}

	// Freeze and thaw (systemd 252 cannot freeze on a hybrid host: the v1
	// freezer of the scope does).
	if err := m.Freeze(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := readBack(t, m, "freezer", "freezer.state"); got != "FROZEN" {
		t.Errorf("after Freeze(true): freezer.state = %q", got)
	}
	if err := m.Freeze(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := readBack(t, m, "freezer", "freezer.state"); got != "THAWED" {
		t.Errorf("after Freeze(false): freezer.state = %q", got)
	}

	// systemd re-executes itself: the connection drops; the driver
	// reconnects and the scope is still known.
	if out, err := sb.Exec(ctx, "systemctl", "daemon-reexec"); err != nil {
		t.Fatalf("systemctl daemon-reexec: %v\n%s", err, out)
	}
	if err := m.Set(ctx, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(200)}}); err != nil {
		t.Fatalf("Set after daemon-reexec: %v", err)
	}
	wantShow(t, sb, unit, map[string]string{"TasksMax": "200", "ActiveState": "active"})
	if got := readBack(t, m, "pids", "pids.max"); got != "200" {
		t.Errorf("after daemon-reexec and Set: pids.max = %q", got)
	}
	if !strings.Contains(logs.String(), "reconnecting") {
		t.Errorf("the driver did not log a reconnect after daemon-reexec; log:\n%s", logs)
	}

	// Destroy: the scope stops, its process dies, systemd forgets it.
	paths := m.Paths()
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.wait(); err == nil {
		t.Error("the helper exited cleanly after Destroy; want killed")
	}
	wantShow(t, sb, unit, map[string]string{"LoadState": "not-found", "ActiveState": "inactive"})
	for k, dir := range paths {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Destroy: %q hierarchy: %s still there (%v)", k, dir, err)
		}
	}
	if _, err := m.Procs(ctx); !errors.Is(err, ErrNotExist) {
		t.Errorf("Procs after Destroy: %v, want ErrNotExist", err)
	}
	if err := m.Set(ctx, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(10)}}); !errors.Is(err, ErrNotExist) {
		t.Errorf("Set after Destroy: %v, want ErrNotExist", err)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Errorf("second Destroy: %v, want nil (a missing unit is no error)", err)
	}
}

// testSystemdLeftover: a failed scope of the same name (a container of a
// previous daemon that hit a timeout) is reset and the start retried.
func testSystemdLeftover(t *testing.T, sb *systemdtest.Sandbox) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, logs := newSystemdDriver(t, ctx)
	id := testutil.Name(t, 50)
	unit := "reconciled-" + id + ".scope"

	// The leftover: a scope that systemd fails after 100 ms (RuntimeMaxSec).
	old, oldDone := startSleep(t)
	c, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := make(chan string, 1)
	if _, err := c.StartTransientUnitContext(ctx, unit, "replace", []sddbus.Property{
		sddbus.PropSlice(DefaultSlice), sddbus.PropPids(uint32(old)),
		{Name: "RuntimeMaxUSec", Value: godbus.MakeVariant(uint64(100000))},
	}, ch); err != nil {
		t.Fatal(err)
	}
	if res := <-ch; res != "done" {
		t.Fatalf("starting the leftover scope: %s", res)
	}
	waitExit(t, oldDone, "leftover scope past RuntimeMaxSec")
	for st := ""; st != "failed"; {
		st = show(t, sb, unit, "ActiveState")["ActiveState"]
		if ctx.Err() != nil {
			t.Fatalf("leftover scope never failed: ActiveState=%s", st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	pid, err := startScope(t, ctx, d, id)
	if err != nil {
		t.Fatalf("Apply over a failed leftover unit: %v", err)
	}
	wantShow(t, sb, unit, map[string]string{"ActiveState": "active", "Description": "test container " + id})
	if cg := procCgroups(t, pid)["name=systemd"]; cg != "/reconciled.slice/"+unit {
		t.Errorf("process in %q, want the scope", cg)
	}
	if !strings.Contains(logs.String(), "unit exists") {
		t.Errorf("Apply did not go through the UnitExists path; log:\n%s", logs)
	}
}

// testSystemdStopOutside: `systemctl stop` of the scope kills the
// container's process (the daemon sees that as an exit).
func testSystemdStopOutside(t *testing.T, sb *systemdtest.Sandbox) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, _ := newSystemdDriver(t, ctx)
	id := testutil.Name(t, 50)
	unit := "reconciled-" + id + ".scope"
	m, err := d.Manager(id, "reconciled-test.slice:reconciled:"+id)
	if err != nil {
		t.Fatal(err)
	}
	pid, done := startSleep(t)
	t.Cleanup(func() {
		if err := m.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy in cleanup: %v", err)
		}
	})
	if err := m.Apply(ctx, pid, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(5)}}); err != nil {
		t.Fatal(err)
	}
	want := "/reconciled.slice/reconciled-test.slice/" + unit
	if cg := procCgroups(t, pid)["pids"]; cg != want {
		t.Errorf("pids cgroup = %q, want %q", cg, want)
	}
	if got := readBack(t, m, "pids", "pids.max"); got != "5" {
		t.Errorf("pids.max = %q", got)
	}
	if out, err := sb.Exec(ctx, "systemctl", "stop", unit); err != nil {
		t.Fatalf("systemctl stop %s: %v\n%s", unit, err, out)
	}
	err = waitExit(t, done, "systemctl stop")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("after systemctl stop: sleep ended with %v, want killed by SIGTERM", err)
	}
	if _, err := m.Procs(ctx); !errors.Is(err, ErrNotExist) {
		t.Errorf("Procs after systemctl stop: %v, want ErrNotExist", err)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Errorf("Destroy of a stopped scope: %v", err)
	}
}

// testSystemdReexecDuringJob: systemd re-executes while a stop job of one
// container's scope runs, and another container's call reconnects the
// shared driver before that job ends. The job's JobRemoved signal went to
// the dropped connection only; Destroy must still see the job end (from the
// unit's state, or a job queued again on the new connection) instead of
// waiting out its whole deadline.
func testSystemdReexecDuringJob(t *testing.T, sb *systemdtest.Sandbox) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, _ := newSystemdDriver(t, ctx)
	name := testutil.Name(t, 40)
	idA, idB := name+"-a", name+"-b"
	unitA, unitB := "reconciled-"+idA+".scope", "reconciled-"+idB+".scope"
	mA, err := d.Manager(idA, "")
	if err != nil {
		t.Fatal(err)
	}
	mB, err := d.Manager(idB, "")
	if err != nil {
		t.Fatal(err)
	}
	// A ignores SIGTERM: its stop job runs until the process is killed
	// (or TimeoutStopSec, 10 s, passes).
	pidA, doneA := startProcess(t, "sh", "-c", `trap "" TERM; exec sleep 300`)
	// Until the shell has run its trap, SIGTERM ends it and the stop job
	// with it at once (a loaded host showed inactive, never deactivating).
	waitIgnores(t, pidA, syscall.SIGTERM)
	pidB, _ := startSleep(t)
	for _, m := range []Manager{mA, mB} {
		t.Cleanup(func() {
			if err := m.Destroy(context.Background()); err != nil {
				t.Errorf("Destroy in cleanup: %v", err)
			}
		})
	}
	if err := mA.Apply(ctx, pidA, nil); err != nil {
		t.Fatal(err)
	}
	if err := mB.Apply(ctx, pidB, nil); err != nil {
		t.Fatal(err)
	}

	dctx, dcancel := context.WithTimeout(ctx, 45*time.Second)
	defer dcancel()
	destroyed := make(chan error, 1)
	go func() { destroyed <- mA.Destroy(dctx) }()
	for st := ""; st != "deactivating"; {
		st = show(t, sb, unitA, "ActiveState")["ActiveState"]
		if ctx.Err() != nil {
			t.Fatalf("the stop job of %s never ran: ActiveState=%s", unitA, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out, err := sb.Exec(ctx, "systemctl", "daemon-reexec"); err != nil {
		t.Fatalf("systemctl daemon-reexec: %v\n%s", err, out)
	}
	// B's call reconnects the shared driver (unless A's wait did already).
	if err := mB.Set(ctx, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(50)}}); err != nil {
		t.Fatalf("Set of %s after daemon-reexec: %v", unitB, err)
	}
	// The stop job ends on the re-executed systemd, which sends its
	// JobRemoved to the new connection only.
	if err := syscall.Kill(pidA, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, doneA, "SIGKILL of "+unitA+"'s process")
	select {
	case err := <-destroyed:
		if err != nil {
			t.Errorf("Destroy of %s across daemon-reexec: %v", unitA, err)
		}
		if dctx.Err() != nil {
			t.Errorf("Destroy of %s returned only when its context ended: it did not see its stop job end after the connection it was queued on was replaced", unitA)
		}
	case <-ctx.Done():
		t.Fatalf("Destroy of %s did not return", unitA)
	}
	wantShow(t, sb, unitA, map[string]string{"ActiveState": "inactive"})
	wantShow(t, sb, unitB, map[string]string{"ActiveState": "active", "TasksMax": "50", "Slice": "reconciled.slice"})
	if got := readBack(t, mB, "pids", "pids.max"); got != "50" {
		t.Errorf("pids.max of %s = %q, want 50", unitB, got)
	}
}
