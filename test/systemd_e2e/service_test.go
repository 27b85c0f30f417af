package systemde2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/internal/testutil/daemontest"
	"reconciled.dev/reconciled/test/systemdtest"
)

// A minimal journald for the sandbox: the stream and datagram sockets in
// the sandbox's own /run, and not the /dev/log socket (/dev is the host's).
const (
	journaldSocket = `[Unit]
Description=Journal socket (systemd_e2e: no /dev/log)
DefaultDependencies=no

[Socket]
ListenStream=/run/systemd/journal/stdout
ListenDatagram=/run/systemd/journal/socket
PassCredentials=yes
PassSecurity=yes
ReceiveBuffer=8M
SocketMode=0666
Timestamping=us
Service=systemd-journald.service
`
	journaldService = `[Unit]
Description=Journal service (systemd_e2e)
DefaultDependencies=no
Requires=systemd-journald.socket
After=systemd-journald.socket

[Service]
Type=notify
ExecStart=/lib/systemd/systemd-journald
Sockets=systemd-journald.socket
RuntimeDirectory=systemd/journal
RuntimeDirectoryPreserve=yes
StandardOutput=null
`
)

// env is the installed daemon inside the sandbox.
type env struct {
	t         *testing.T
	sb        *systemdtest.Sandbox
	bin       string // installed binary
	unitDir   string // where systemd reads units (SYSTEMD_UNIT_PATH)
	manifests string
	state     string
	daemon    daemontest.Daemon // reached through the installed binary
}

// The daemon's own status types, as `reconciled status -o json` prints
// them (their JSON keys are pinned in daemontest).
type report = daemontest.Report

// TestService installs the daemon into a sandboxed systemd and runs it as
// reconciled.service; the subtests share that one service and sandbox, in
// order.
func TestService(t *testing.T) {
	if !systemdtest.Inside() {
		// Built out here: inside, the host's /tmp (where a checkout may
		// be) is hidden.
		built := filepath.Join(t.TempDir(), "reconciled")
		if err := testutil.BuildShipped(t.Context(), built, ""); err != nil { // as shipped
			t.Fatal(err)
		}
		sb := systemdtest.Start(t)
		if err := sb.CopyIn(built, builtInSandbox); err != nil {
			t.Fatal(err)
		}
		sb.Run(t)
		return
	}
	e := setup(t)

	t.Run("NotifyReady", e.testNotifyReady)
	t.Run("Scopes", e.testScopes)
	t.Run("ScopeStoppedFromOutside", e.testScopeStoppedFromOutside)
	t.Run("Reload", e.testReload)
	t.Run("DaemonReexecDuringConverge", e.testDaemonReexec)
	t.Run("RestartKeepsContainers", e.testRestartKeepsContainers)
	t.Run("Journald", e.testJournald)
	t.Run("WatchdogKillsWedgedLoop", e.testWatchdog)
	t.Run("RuncInScope", e.testRuncInScope)
}

// builtInSandbox is where TestService copies the binary it built outside.
const builtInSandbox = "/run/reconciled-e2e/built/reconciled"

// setup installs the binary with `reconciled install` (binary
// in the sandbox's /run, unit in systemd's unit directory, manifests under
// /tmp, the sandbox's own), starts a journald and the service.
func setup(t *testing.T) *env {
	sb := systemdtest.Current(t)
	ctx := t.Context()
	unitPath := strings.TrimSpace(mustRun(t, "systemctl", "show", "-p", "UnitPath", "--value"))
	dir := t.TempDir() // the sandbox's /tmp
	e := &env{
		t: t, sb: sb,
		bin:       "/run/reconciled-e2e/bin/reconciled",
		unitDir:   strings.Fields(unitPath)[0],
		manifests: filepath.Join(dir, "reconciled.d"),
		state:     "/run/reconciled-e2e/state",
	}
	e.daemon = daemontest.Daemon{Bin: e.bin, State: e.state}
	out := mustRun(t, builtInSandbox, "install", "--prefix", "/run/reconciled-e2e", "--unit-dir", e.unitDir, "--manifests", e.manifests)
	t.Logf("reconciled install:\n%s", out)
	if fi, err := os.Stat(e.manifests); err != nil || fi.Mode().Perm() != 0o755 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("install made %s: %v, %v; want an empty directory, mode 0755, owned by root", e.manifests, fi, err)
	}

	units := map[string]string{"systemd-journald.socket": journaldSocket, "systemd-journald.service": journaldService}
	// The targets a service's default dependencies name, empty: the
	// sandbox has no other units (no systemd-tmpfiles, which would empty
	// the host's /tmp).
	for _, target := range []string{"sysinit.target", "basic.target", "shutdown.target"} {
		units[target] = "[Unit]\nDescription=" + target + " (empty, systemd_e2e)\nDefaultDependencies=no\n"
	}
	for name, text := range units {
		writeFile(t, filepath.Join(e.unitDir, name), text)
	}
	// The shipped unit, with the paths of this test (a drop-in, as an
	// administrator would do). --cgroup-parent: the slice of the default
	// state directory, for this one.
	e.dropIn("10-paths.conf", "[Service]\nExecStart=\nExecStart="+e.bin+" run --state "+e.state+" --cgroup-parent reconciled.slice"+
		" --manifests "+e.manifests+" --log-dir /run/reconciled-e2e/logs --log-driver journald --image-root /run/reconciled-e2e/images --image-import-dir /run/reconciled-e2e/import\n")
	mustRun(t, "systemctl", "daemon-reload")
	mustRun(t, "systemctl", "start", "systemd-journald.socket", "systemd-journald.service")

	t.Cleanup(e.cleanup)
	start := time.Now()
	// Type=notify: start returns once the daemon said READY=1.
	mustRun(t, "systemctl", "start", "reconciled.service")
	t.Logf("systemctl start reconciled.service returned after %s", time.Since(start).Round(time.Millisecond))
	_ = ctx
	return e
}

// dropIn writes a drop-in of reconciled.service (daemon-reload is the
// caller's).
func (e *env) dropIn(name, text string) {
	writeFile(e.t, filepath.Join(e.unitDir, "reconciled.service.d", name), text)
}

// cleanup removes every manifest and waits for the daemon to delete the
// containers, stops the service, force-deletes whatever is left, and checks
// that no scope and no cgroup of a container is left (the sandbox itself
// is stopped and checked by systemdtest).
func (e *env) cleanup() {
	t := e.t
	if t.Failed() {
		out, _ := exec.Command("journalctl", "--no-pager", "-n", "80", "-u", "reconciled.service").CombinedOutput()
		t.Logf("journalctl -u reconciled.service:\n%s", out)
	}
	os.RemoveAll(filepath.Join(e.unitDir, "reconciled.service.d", "90-watchdog.conf"))
	exec.Command("systemctl", "daemon-reload").Run()
	entries, _ := os.ReadDir(e.manifests)
	for _, ent := range entries {
		os.Remove(filepath.Join(e.manifests, ent.Name()))
	}
	if out, err := exec.Command("systemctl", "restart", "reconciled.service").CombinedOutput(); err != nil {
		t.Errorf("restarting the service to clean up: %v\n%s", err, out)
	} else {
		deadline := time.Now().Add(60 * time.Second)
		for {
			r, err := e.status()
			if err == nil && len(r.Containers) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("containers left 60s after their manifests were removed: %+v, %v", r, err)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if out, err := exec.Command("systemctl", "stop", "reconciled.service").CombinedOutput(); err != nil {
		t.Errorf("systemctl stop reconciled: %v\n%s", err, out)
	}
	root := filepath.Join(e.state, "runtime")
	left, _ := os.ReadDir(root)
	for _, ent := range left {
		t.Errorf("container %s left after its manifest was removed; deleting it", ent.Name())
		if out, err := exec.Command(e.bin, "runtime", "--root", root, "delete", "--force", ent.Name()).CombinedOutput(); err != nil {
			t.Errorf("delete --force %s: %v\n%s", ent.Name(), err, out)
		}
	}
	out, _ := exec.Command("systemctl", "list-units", "--all", "--no-legend", "--plain", "reconciled-*.scope").CombinedOutput()
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("scopes left:\n%s", s)
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/reconciled.slice/*.scope")
	for _, c := range cgs {
		t.Errorf("cgroup left: %s", c)
	}
}

func (e *env) testNotifyReady(t *testing.T) {
	p := show(t, "reconciled.service", "Type", "ActiveState", "SubState", "StatusText", "MainPID", "NotifyAccess", "KillMode", "WatchdogUSec")
	if p["Type"] != "notify" || p["ActiveState"] != "active" || p["SubState"] != "running" {
		t.Errorf("reconciled.service: %v; want Type=notify, active (running)", p)
	}
	if p["StatusText"] != "no containers" {
		t.Errorf("StatusText = %q, want %q (no manifests yet)", p["StatusText"], "no containers")
	}
	out := mustRun(t, "systemctl", "status", "--no-pager", "reconciled.service")
	if !strings.Contains(out, "active (running)") {
		t.Errorf("systemctl status:\n%s", out)
	}
	r := e.waitFor(t, "the daemon answers", func(r *report) bool { return true })
	if strconv.Itoa(r.Daemon.Pid) != p["MainPID"] {
		t.Errorf("status says daemon pid %d, systemd says MainPID=%s", r.Daemon.Pid, p["MainPID"])
	}
	if r.CgroupDriver != "systemd" || r.LogDriver != "journald" {
		t.Errorf("status: cgroupDriver %q, logDriver %q; want systemd (auto, systemd is PID 1), journald", r.CgroupDriver, r.LogDriver)
	}
	text := mustRun(t, e.bin, "status", "--state", e.state)
	if !strings.Contains(text, "cgroup driver systemd") {
		t.Errorf("status text does not name the driver:\n%s", text)
	}
}

func (e *env) testScopes(t *testing.T) {
	// web handles SIGTERM (a PID namespace's init ignores signals it has
	// no handler for): a scope stopped by systemd makes it exit 7.
	e.write("web.yaml", manifest("web", "echo hello-from-web; trap 'exit 7' TERM; sleep 100000 & wait", "  resources: {memory: 48Mi, cpu: 250m, pids: 20}\n"))
	e.write("db.yaml", manifest("db", "exec sleep 100000", "  resources: {memory: 32Mi}\n"))
	r := e.waitRunning(t, "web", "db")
	web := r.Get("web")
	p := show(t, "reconciled-web.scope", "Slice", "ActiveState", "MemoryLimit", "TasksMax", "CPUQuotaPerSecUSec", "Delegate", "Description")
	want := map[string]string{"Slice": "reconciled.slice", "ActiveState": "active", "MemoryLimit": "50331648", "TasksMax": "20", "CPUQuotaPerSecUSec": "250ms", "Delegate": "yes"}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("systemctl show reconciled-web.scope: %s=%q, want %q", k, p[k], v)
		}
	}
	// The kernel's view: the init is in the scope, whose files hold the limits.
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", web.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cg), ":memory:/reconciled.slice/reconciled-web.scope\n") {
		t.Errorf("/proc/%d/cgroup:\n%s\nwant the memory cgroup /reconciled.slice/reconciled-web.scope", web.Pid, cg)
	}
	for file, v := range map[string]string{
		"/sys/fs/cgroup/memory/reconciled.slice/reconciled-web.scope/memory.limit_in_bytes": "50331648",
		"/sys/fs/cgroup/pids/reconciled.slice/reconciled-web.scope/pids.max":                "20",
		"/sys/fs/cgroup/memory/reconciled.slice/reconciled-db.scope/memory.limit_in_bytes":  "33554432",
	} {
		if b, err := os.ReadFile(file); err != nil || strings.TrimSpace(string(b)) != v {
			t.Errorf("%s = %q, %v; want %s", file, b, err, v)
		}
	}
	e.waitStatusText(t, "2 running")
}

// A scope stopped or killed from outside is the container exiting: it is
// restarted (restart: always) in a new scope.
func (e *env) testScopeStoppedFromOutside(t *testing.T) {
	before := e.waitRunning(t, "web").Get("web")
	mustRun(t, "systemctl", "stop", "reconciled-web.scope")
	r := e.waitFor(t, "web restarted after systemctl stop", func(r *report) bool {
		c := r.Get("web")
		return c != nil && c.Phase == "running" && c.Pid != before.Pid && c.Pid > 0 && c.Restarts > before.Restarts
	})
	after := r.Get("web")
	if after.ExitCode == nil || *after.ExitCode != 7 {
		t.Errorf("after systemctl stop: exitCode %v, want 7 (its SIGTERM handler, run on systemd's SIGTERM)", deref(after.ExitCode))
	}
	if p := show(t, "reconciled-web.scope", "ActiveState"); p["ActiveState"] != "active" {
		t.Errorf("new scope: %v", p)
	}
	mustRun(t, "systemctl", "kill", "--signal=SIGKILL", "reconciled-web.scope")
	r = e.waitFor(t, "web restarted after systemctl kill", func(r *report) bool {
		c := r.Get("web")
		return c != nil && c.Phase == "running" && c.Pid != after.Pid && c.Pid > 0 && c.Restarts > after.Restarts
	})
	if c := r.Get("web"); c.ExitCode == nil || *c.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("after systemctl kill: exitCode %v, want %d", c.ExitCode, 128+int(syscall.SIGKILL))
	}
}

// systemctl reload: SIGHUP, a full rescan; the service stays active with
// the same PID, and the containers are untouched.
func (e *env) testReload(t *testing.T) {
	r := e.waitRunning(t, "web", "db")
	pid := show(t, "reconciled.service", "MainPID")["MainPID"]
	since := time.Now().Add(-time.Second).Format("2006-01-02 15:04:05")
	mustRun(t, "systemctl", "reload", "reconciled.service")
	e.waitFor(t, "the reload's rescan", func(*report) bool {
		out, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "-u", "reconciled.service", "--since", since).CombinedOutput()
		i := strings.Index(string(out), "reload requested")
		return i >= 0 && strings.Contains(string(out[i:]), "manifests loaded") && strings.Contains(string(out[i:]), "ready: first pass")
	})
	p := show(t, "reconciled.service", "MainPID", "ActiveState", "SubState")
	if p["MainPID"] != pid || p["ActiveState"] != "active" || p["SubState"] != "running" {
		t.Errorf("after reload: %v; want MainPID=%s, active (running)", p, pid)
	}
	after := e.waitRunning(t, "web", "db")
	for _, n := range []string{"web", "db"} {
		if after.Get(n).Pid != r.Get(n).Pid {
			t.Errorf("%s: pid %d before the reload, %d after", n, r.Get(n).Pid, after.Get(n).Pid)
		}
	}
}

// systemctl daemon-reexec while containers are being created: every
// container ends up running in exactly one scope, the service keeps its
// PID.
func (e *env) testDaemonReexec(t *testing.T) {
	pid := show(t, "reconciled.service", "MainPID")["MainPID"]
	var names []string
	for i := range 6 {
		n := fmt.Sprintf("burst%d", i)
		names = append(names, n)
		e.write(n+".yaml", manifest(n, "exec sleep 100000", "  resources: {memory: 16Mi}\n"))
	}
	reexec, dumped := time.Now(), false
	if out, err := exec.Command("systemctl", "daemon-reexec").CombinedOutput(); err != nil {
		t.Fatalf("systemctl daemon-reexec: %v\n%s", err, out)
	}
	r := e.waitFor(t, "every container running after the re-exec", func(r *report) bool {
		if daemontest.Running(r, append(names, "web", "db")...) {
			return true
		}
		if time.Since(reexec) > 50*time.Second && !dumped {
			// Where is it stuck? Go prints every goroutine on SIGQUIT.
			dumped = true
			mainPid, _ := strconv.Atoi(pid)
			syscall.Kill(mainPid, syscall.SIGQUIT)
			time.Sleep(2 * time.Second)
			out, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "-u", "reconciled.service", "-n", "600").CombinedOutput()
			t.Logf("daemon stuck; its journal:\n%s", out)
		}
		return false
	})
	for _, n := range append(names, "web", "db") {
		c := r.Get(n)
		// ControlGroup, not Slice: the sandbox's SYSTEMD_UNIT_PATH leaves
		// out /run/systemd/transient, so a re-executed systemd no longer
		// reads the scopes' transient unit files and reports the default
		// Slice=system.slice for those started before the re-exec, while
		// their cgroups stay where they are. A host's systemd reads them.
		p := show(t, "reconciled-"+n+".scope", "ActiveState", "ControlGroup")
		if p["ActiveState"] != "active" || p["ControlGroup"] != "/reconciled.slice/reconciled-"+n+".scope" {
			t.Errorf("scope of %s: %v", n, p)
		}
		procs, err := os.ReadFile("/sys/fs/cgroup/pids/reconciled.slice/reconciled-" + n + ".scope/cgroup.procs")
		if err != nil || !containsLine(string(procs), strconv.Itoa(c.Pid)) {
			t.Errorf("%s: pid %d not in its scope's cgroup.procs (%q, %v)", n, c.Pid, procs, err)
		}
	}
	out := mustRun(t, "systemctl", "list-units", "--all", "--no-legend", "--plain", "reconciled-*.scope")
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != len(names)+2 {
		t.Errorf("%d scopes, want %d:\n%s", n, len(names)+2, out)
	}
	if p := show(t, "reconciled.service", "MainPID", "ActiveState"); p["MainPID"] != pid || p["ActiveState"] != "active" {
		t.Errorf("service after daemon-reexec: %v, want MainPID=%s active", p, pid)
	}
	for _, n := range names {
		os.Remove(filepath.Join(e.manifests, n+".yaml"))
	}
	e.waitFor(t, "the burst deleted", func(r *report) bool {
		for _, n := range names {
			if r.Get(n) != nil {
				return false
			}
		}
		return true
	})
	for _, n := range names {
		if p := show(t, "reconciled-"+n+".scope", "LoadState", "ActiveState"); p["ActiveState"] == "active" {
			t.Errorf("scope of deleted %s: %v", n, p)
		}
	}
}

// systemctl restart reconciled: a new daemon, the same containers (same
// PIDs), and their monitors alive: a container that exits afterwards has
// its exit code recorded.
func (e *env) testRestartKeepsContainers(t *testing.T) {
	r := e.waitRunning(t, "web", "db")
	oldMain := show(t, "reconciled.service", "MainPID")["MainPID"]
	monitors := map[string]int{}
	for _, n := range []string{"web", "db"} {
		st, err := executor.ReadState(filepath.Join(e.state, "runtime"), n)
		if err != nil || st.MonitorPid <= 0 {
			t.Fatalf("state of %s: %+v, %v", n, st, err)
		}
		monitors[n] = st.MonitorPid
	}
	mustRun(t, "systemctl", "restart", "reconciled.service")
	p := show(t, "reconciled.service", "MainPID", "ActiveState", "SubState")
	if p["MainPID"] == oldMain || p["ActiveState"] != "active" || p["SubState"] != "running" {
		t.Fatalf("after restart: %v (old MainPID %s)", p, oldMain)
	}
	after := e.waitRunning(t, "web", "db")
	for _, n := range []string{"web", "db"} {
		if after.Get(n).Pid != r.Get(n).Pid || after.Get(n).Restarts != r.Get(n).Restarts {
			t.Errorf("%s: %+v before the restart, %+v after; want the same pid and restarts", n, r.Get(n), after.Get(n))
		}
		if !alive(monitors[n]) {
			t.Errorf("monitor %d of %s died with the service", monitors[n], n)
		}
	}
	// The monitor started by the old daemon still records an exit.
	db := after.Get("db")
	if err := syscall.Kill(db.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "db's exit recorded and db restarted", func(r *report) bool {
		c := r.Get("db")
		return c != nil && c.Phase == "running" && c.Pid != db.Pid && c.Pid > 0 && c.ExitCode != nil && *c.ExitCode == 137
	})
}

// Containers' output in the journal under their name; the daemon's own
// log, logfmt, under the unit.
func (e *env) testJournald(t *testing.T) {
	e.waitFor(t, "web's output in the journal", func(*report) bool {
		out, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "-t", "web").CombinedOutput()
		return strings.Contains(string(out), "hello-from-web")
	})
	out := mustRun(t, "journalctl", "--no-pager", "-o", "json", "-t", "web", "-n", "1")
	var entry map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(strings.Split(out, "\n")[0])), &entry); err != nil {
		t.Fatalf("journalctl -o json: %v\n%s", err, out)
	}
	if entry["SYSLOG_IDENTIFIER"] != "web" || entry["PRIORITY"] != "6" {
		t.Errorf("journal entry of web: SYSLOG_IDENTIFIER=%v PRIORITY=%v", entry["SYSLOG_IDENTIFIER"], entry["PRIORITY"])
	}
	out = mustRun(t, "journalctl", "--no-pager", "-o", "cat", "-u", "reconciled.service")
	if !strings.Contains(out, `msg="reconciled started"`) || !strings.Contains(out, "cgroupDriver=systemd") {
		t.Errorf("journalctl -u reconciled.service lacks the daemon's start line (logfmt):\n%s", testutil.Tail(out, 20))
	}
}

// A daemon whose loop is wedged (test hook) stops petting the watchdog and
// is killed by systemd; its containers live on.
func (e *env) testWatchdog(t *testing.T) {
	r := e.waitRunning(t, "web", "db")
	e.dropIn("90-watchdog.conf", "[Service]\nExecStart=\nExecStart="+e.bin+" run --state "+e.state+" --cgroup-parent reconciled.slice"+
		" --manifests "+e.manifests+" --log-dir /run/reconciled-e2e/logs --log-driver journald --image-root /run/reconciled-e2e/images --image-import-dir /run/reconciled-e2e/import --test-block-loop-after 2s\n"+
		"WatchdogSec=3s\nRestartSec=10min\n")
	mustRun(t, "systemctl", "daemon-reload")
	since := time.Now().Add(-time.Second).Format("2006-01-02 15:04:05")
	mustRun(t, "systemctl", "restart", "reconciled.service")
	var p map[string]string
	deadline := time.Now().Add(60 * time.Second)
	for {
		p = show(t, "reconciled.service", "Result", "ActiveState", "SubState", "ExecMainCode", "ExecMainStatus")
		if p["Result"] == "watchdog" && p["SubState"] == "auto-restart" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the wedged daemon was not killed by the watchdog within 60s: %v", p)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Killed with SIGABRT (WatchdogSignal), waiting to be restarted.
	// WatchdogSignal=SIGABRT: Go prints every goroutine and exits 2.
	if p["ExecMainCode"] == "1" && p["ExecMainStatus"] != "2" || p["ExecMainCode"] == "2" && p["ExecMainStatus"] != strconv.Itoa(int(syscall.SIGABRT)) {
		t.Errorf("after the watchdog: %v; want killed by SIGABRT, or exited 2 after Go's SIGABRT dump", p)
	}
	out, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "-u", "reconciled.service", "--since", since).CombinedOutput()
	if !strings.Contains(string(out), "SIGABRT") || !strings.Contains(string(out), "--test-block-loop-after: blocking") {
		t.Errorf("the journal does not show the wedged loop's SIGABRT dump:\n%s", testutil.Tail(string(out), 40))
	}
	for _, n := range []string{"web", "db"} {
		if !alive(r.Get(n).Pid) {
			t.Errorf("%s (pid %d) died with the wedged daemon", n, r.Get(n).Pid)
		}
	}
	os.Remove(filepath.Join(e.unitDir, "reconciled.service.d", "90-watchdog.conf"))
	mustRun(t, "systemctl", "daemon-reload")
	mustRun(t, "systemctl", "restart", "reconciled.service")
	after := e.waitRunning(t, "web", "db")
	for _, n := range []string{"web", "db"} {
		if after.Get(n).Pid != r.Get(n).Pid {
			t.Errorf("%s: pid %d before the watchdog kill, %d after", n, r.Get(n).Pid, after.Get(n).Pid)
		}
	}
}

// A runc container (runtime: runc) under the systemd driver: runc, run
// with --systemd-cgroup, puts it in reconciled-NAME.scope in
// reconciled.slice with its limits, where the daemon looks for it; a
// scope killed from outside is its exit, and it is restarted.
func (e *env) testRuncInScope(t *testing.T) {
	testutil.RequireBinary(t, "runc")
	rootfs := testutil.BusyboxRootfs(t) // under the sandbox's /tmp, as the daemon sees it
	const name = "oci"
	m := strings.Replace(manifest(name, "exec sleep 100000", "  runtime: runc\n  resources: {memory: 24Mi}\n"),
		"root: {path: /,", "root: {path: "+rootfs+",", 1)
	e.write(name+".yaml", m)
	t.Cleanup(func() {
		os.Remove(filepath.Join(e.manifests, name+".yaml"))
		e.waitFor(t, name+" deleted", func(r *report) bool { return r.Get(name) == nil })
	})
	first := e.waitRunning(t, name).Get(name)
	if first.Runtime != "runc" {
		t.Errorf("status: runtime %q, want runc", first.Runtime)
	}
	scope := "reconciled-" + name + ".scope"
	p := show(t, scope, "Slice", "ControlGroup", "ActiveState")
	if p["Slice"] != "reconciled.slice" || p["ControlGroup"] != "/reconciled.slice/"+scope || p["ActiveState"] != "active" {
		t.Errorf("systemctl show %s: %v; want Slice=reconciled.slice, ControlGroup=/reconciled.slice/%s, active", scope, p, scope)
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", first.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, ctrl := range []string{"memory", "pids"} {
		if !strings.Contains(string(cg), ":"+ctrl+":/reconciled.slice/"+scope+"\n") {
			t.Errorf("/proc/%d/cgroup:\n%s\nwant the %s cgroup /reconciled.slice/%s", first.Pid, cg, ctrl, scope)
		}
	}
	limit := "/sys/fs/cgroup/memory/reconciled.slice/" + scope + "/memory.limit_in_bytes"
	if b, err := os.ReadFile(limit); err != nil || strings.TrimSpace(string(b)) != "25165824" {
		t.Errorf("%s = %q, %v; want 25165824 (24Mi)", limit, b, err)
	}

	mustRun(t, "systemctl", "kill", "-s", "KILL", scope)
	r := e.waitFor(t, name+" restarted after systemctl kill", func(r *report) bool {
		c := r.Get(name)
		return c != nil && c.Phase == "running" && c.Pid > 0 && c.Pid != first.Pid && c.Message == ""
	})
	c := r.Get(name)
	if c.Restarts != 1 || c.ExitCode == nil || *c.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("after systemctl kill: restarts %d, exitCode %v; want 1, %d", c.Restarts, deref(c.ExitCode), 128+int(syscall.SIGKILL))
	}
	if alive(first.Pid) {
		t.Errorf("old pid %d still runs", first.Pid)
	}
	if p := show(t, scope, "Slice", "ActiveState"); p["Slice"] != "reconciled.slice" || p["ActiveState"] != "active" {
		t.Errorf("scope after the restart: %v", p)
	}
	procs, err := os.ReadFile("/sys/fs/cgroup/pids/reconciled.slice/" + scope + "/cgroup.procs")
	if err != nil || !containsLine(string(procs), strconv.Itoa(c.Pid)) {
		t.Errorf("new pid %d not in %s's cgroup.procs (%q, %v)", c.Pid, scope, procs, err)
	}
}

// --- helpers ---

// manifest is a container on the host's root, read-only, as nobody,
// restarted always.
func manifest(name, command, extra string) string {
	return daemontest.Manifest(name, command, "  restart: always\n"+extra)
}

// write puts a manifest in place as deployment tools do (rename).
func (e *env) write(file, content string) {
	e.t.Helper()
	testutil.WriteManifest(e.t, e.manifests, file, content)
}

func (e *env) status() (*report, error) { return e.daemon.Status() }

func (e *env) waitFor(t *testing.T, what string, cond func(*report) bool) *report {
	t.Helper()
	return e.daemon.WaitFor(t, what, 60*time.Second, cond)
}

func (e *env) waitRunning(t *testing.T, names ...string) *report {
	t.Helper()
	return e.daemon.WaitRunning(t, 60*time.Second, names...)
}

func (e *env) waitStatusText(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := show(t, "reconciled.service", "StatusText")
		if strings.HasPrefix(p["StatusText"], prefix) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("StatusText = %q, want it to start with %q", p["StatusText"], prefix)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// show reads unit properties with systemctl show.
func show(t *testing.T, unit string, props ...string) map[string]string {
	t.Helper()
	out := mustRun(t, "systemctl", "show", "-p", strings.Join(props, ","), unit)
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func alive(pid int) bool { return proc.Exists(pid) }

func containsLine(s, line string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
