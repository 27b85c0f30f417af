package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/internal/proc"
)

// Health checks (spec.health) and start order (spec.after) with real
// containers and real probes: each container has its own network
// namespace (network: private), so an http or tcp probe that passes went
// through the daemon's setns into it, and a tmpfs at /tmp that the test
// reaches through /proc/PID/root.

// probeManifest is a container in its own network namespace with a tmpfs
// at /tmp, running script, with extra spec lines.
func probeManifest(name, script, extra string) string {
	return manifest(name, script, "  network: private\n  mounts: [{type: tmpfs, target: /tmp}]\n"+extra)
}

// inContainer is path inside the container whose init is pid.
func inContainer(pid int, path string) string {
	return filepath.Join("/proc", strconv.Itoa(pid), "root", path)
}

// hasEventWith says whether c has an event whose reason contains text.
func hasEventWith(c *container, text string) bool {
	for _, e := range c.Events {
		if strings.Contains(e.Reason, text) {
			return true
		}
	}
	return false
}

// waitHealth waits until container name's health is state.
func (e *env) waitHealth(name, state string, timeout time.Duration) *container {
	e.t.Helper()
	return e.waitFor(name+" "+state, timeout, func(r *report) bool {
		c := r.Get(name)
		return c != nil && c.Phase == "running" && c.Health == state
	}).Get(name)
}

// An httpd that starts returning errors becomes unhealthy after retries
// failures and is restarted, with a new PID and the events that say why.
// Before that, a daemon restart re-probes it without restarting it.
func TestHealthHTTPUnhealthyRestarts(t *testing.T) {
	e := newEnv(t)
	web := e.name("web")
	script := "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www"
	e.write("web.yaml", probeManifest(web, script,
		"  health: {http: {port: 8080, path: /index.html}, interval: 200ms, timeout: 1s, retries: 3}\n"))
	e.start()
	c := e.waitHealth(web, "healthy", 30*time.Second)
	if !c.Ready || c.HealthFailures != 0 || c.Restarts != 0 {
		t.Fatalf("healthy: %+v", c)
	}
	pid := c.Pid

	// A daemon restart: the container is adopted and probed again, not
	// restarted.
	e.restartDaemon(web, pid)
	c = e.waitHealth(web, "healthy", 30*time.Second)
	if c.Pid != pid || c.Restarts != 0 {
		t.Fatalf("after a daemon restart: pid %d (was %d), restarts %d", c.Pid, pid, c.Restarts)
	}

	if err := os.Remove(inContainer(pid, "/tmp/www/index.html")); err != nil {
		t.Fatal(err)
	}
	e.waitFor(web+" restarted for its health", 30*time.Second, func(r *report) bool {
		c := r.Get(web)
		return c != nil && c.Restarts == 1 && c.Pid != 0 && c.Pid != pid
	})
	c = e.waitHealth(web, "healthy", 30*time.Second)
	c = e.statusOf(web)
	for _, want := range []string{
		"unhealthy: http GET :8080/index.html returned 404 (3 in a row)",
		"restarted: unhealthy",
	} {
		if !hasEventWith(c, want) {
			t.Errorf("no event %q in %+v", want, c.Events)
		}
	}
	if alive(pid) {
		t.Errorf("the unhealthy container's pid %d still runs", pid)
	}
}

// A tcp probe on a port that closes makes the container unhealthy; with
// onUnhealthy: none that is only reported: same PID, no restart.
func TestHealthTCPPortClosesOnlyReported(t *testing.T) {
	e := newEnv(t)
	db := e.name("db")
	script := "busybox httpd -f -p 9000 -h /tmp & while [ ! -e /tmp/close ]; do sleep 0.1; done; kill $!; exec sleep 100000"
	e.write("db.yaml", probeManifest(db, script,
		"  health: {tcp: {port: 9000}, interval: 200ms, retries: 2, onUnhealthy: none}\n"))
	e.start()
	c := e.waitHealth(db, "healthy", 30*time.Second)
	pid := c.Pid
	if err := os.WriteFile(inContainer(pid, "/tmp/close"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c = e.waitHealth(db, "unhealthy", 30*time.Second)
	if c.Ready || c.HealthFailures < 2 {
		t.Errorf("unhealthy: ready %v, failures %d", c.Ready, c.HealthFailures)
	}
	time.Sleep(time.Second) // more failed probes: still nothing done
	c = e.statusOf(db)
	if c.Pid != pid || c.Restarts != 0 || c.Health != "unhealthy" {
		t.Errorf("onUnhealthy none: pid %d (was %d), restarts %d, health %s", c.Pid, pid, c.Restarts, c.Health)
	}
	if !hasEventWith(c, "unhealthy: tcp :9000 failed: connection refused (2 in a row)") || hasEventWith(c, "restarted: unhealthy") {
		t.Errorf("events: %+v", c.Events)
	}
	if !strings.Contains(c.HealthOutput, "tcp :9000 failed") {
		t.Errorf("last probe: %q", c.HealthOutput)
	}
}

// An exec probe that outlives its timeout is killed and counts as a
// failure.
func TestHealthExecTimeout(t *testing.T) {
	e := newEnv(t)
	job := e.name("slow")
	e.write("slow.yaml", probeManifest(job, "exec sleep 100000",
		"  health: {exec: [/bin/sleep, \"30\"], interval: 200ms, timeout: 300ms, retries: 2, onUnhealthy: none}\n"))
	e.start()
	c := e.waitHealth(job, "unhealthy", 30*time.Second)
	if !strings.Contains(c.HealthOutput, "timed out after 300ms") {
		t.Errorf("last probe: %q", c.HealthOutput)
	}
	// The probes were killed: at most the one running now is left.
	time.Sleep(500 * time.Millisecond)
	if n := countProcs(t, c.Pid, "/bin/sleep\x0030\x00"); n > 1 {
		t.Errorf("%d probe commands in the container's cgroup: the timed-out probes were not killed", n)
	}
	// And reaped: none is left a zombie of the container's PID 1 (a sleep,
	// which reaps nothing).
	if z := zombiesOf(t, c.Pid); len(z) > 0 {
		t.Errorf("zombies left to the container's init: %v", z)
	}
}

// zombiesOf lists the zombie children of pid.
func zombiesOf(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := proc.ReadStat(p)
		if err == nil && st.PPID == pid && st.Zombie() {
			out = append(out, p)
		}
	}
	return out
}

// countProcs counts the processes in pid's pids cgroup (or its unified
// cgroup) whose command line is cmdline ("" counts all).
func countProcs(t *testing.T, pid int, cmdline string) int {
	t.Helper()
	cg, err := cgroupDir(pid, "pids")
	if err != nil {
		if cg, err = cgroupDir(pid, ""); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range strings.Fields(string(data)) {
		if cl, err := os.ReadFile("/proc/" + p + "/cmdline"); cmdline == "" || (err == nil && string(cl) == cmdline) {
			n++
		}
	}
	return n
}

// Failures inside startPeriod do not count: a container that takes longer
// than retries probes to come up is not restarted.
func TestHealthStartPeriod(t *testing.T) {
	e := newEnv(t)
	app := e.name("app")
	e.write("app.yaml", probeManifest(app, "sleep 2; touch /tmp/ok; exec sleep 100000",
		"  health: {exec: [/bin/sh, -c, test -e /tmp/ok], interval: 200ms, timeout: 5s, retries: 1, startPeriod: 20s}\n"))
	e.start()
	c := e.waitHealth(app, "healthy", 30*time.Second)
	if c.Restarts != 0 || hasEventWith(e.statusOf(app), "unhealthy") {
		t.Errorf("failures inside startPeriod counted: %+v", e.statusOf(app))
	}
}

// A chain db -> api -> web with healthy conditions starts in order: each
// waits, with the reason shown, until the one before it is healthy.
func TestAfterChainStartsInOrder(t *testing.T) {
	e := newEnv(t)
	db, api, web := e.name("db"), e.name("api"), e.name("web")
	slowReady := "sleep 1.5; touch /tmp/ready; exec sleep 100000"
	health := "  health: {exec: [/bin/sh, -c, test -e /tmp/ready], interval: 200ms, timeout: 5s, startPeriod: 20s}\n"
	e.write("db.yaml", probeManifest(db, slowReady, health))
	e.write("api.yaml", probeManifest(api, slowReady, health+"  after: [{name: "+db+", condition: healthy}]\n"))
	e.write("web.yaml", probeManifest(web, slowReady, health+"  after: [{name: "+api+", condition: healthy}]\n"))
	e.start()
	seen := map[string]bool{}
	r := e.waitFor("the chain healthy", 60*time.Second, func(r *report) bool {
		for _, c := range r.Containers {
			if c.Phase == "pending" {
				seen[c.Name+": "+c.Message] = true
			}
		}
		for _, n := range []string{db, api, web} {
			if c := r.Get(n); c == nil || c.Health != "healthy" {
				return false
			}
		}
		return true
	})
	for _, want := range []string{
		api + ": waiting for " + db + ": not healthy yet",
		web + ": waiting for " + api + ": not healthy yet",
	} {
		if !seen[want] {
			t.Errorf("never saw %q (saw %v)", want, seen)
		}
	}
	d, a, w := r.Get(db), r.Get(api), r.Get(web)
	// Each started after the one before it had been up for the 1.5s its
	// probe needs.
	if a.Started.Sub(d.Started) < 1500*time.Millisecond || w.Started.Sub(a.Started) < 1500*time.Millisecond {
		t.Errorf("start times: db %s, api %s, web %s", d.Started, a.Started, w.Started)
	}
}

// notifyReady sends READY=1 and STATUS=serving on $NOTIFY_SOCKET, then
// becomes the container's long-running process (the sender lives on, as
// a service's would).
const notifyReady = `exec /usr/bin/python3 -c "import socket,os; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b'READY=1\nSTATUS=serving', '\0'+os.environ['NOTIFY_SOCKET'][1:]); os.execv('/bin/sleep', ['sleep', '100000'])"`

// A container sending READY=1 on its notify socket becomes ready (and
// what waits for it ready is created); one that never does stays not
// ready, and a message forged by another process of the host is ignored.
func TestNotifyReady(t *testing.T) {
	e := newEnv(t)
	svc, silent, app, blocked := e.name("svc"), e.name("silent"), e.name("app"), e.name("blocked")
	e.write("svc.yaml", manifest(svc, notifyReady, "  notify: true\n"))
	e.write("silent.yaml", manifest(silent, "exec sleep 100000", "  notify: true\n"))
	e.write("app.yaml", manifest(app, "exec sleep 100000", "  after: [{name: "+svc+", condition: ready}]\n"))
	e.write("blocked.yaml", manifest(blocked, "exec sleep 100000", "  after: [{name: "+silent+", condition: ready}]\n"))
	e.start()
	r := e.waitFor(svc+" ready and "+app+" running", 30*time.Second, func(r *report) bool {
		s, a, sil := r.Get(svc), r.Get(app), r.Get(silent)
		return s != nil && s.Ready && a != nil && a.Phase == "running" && sil != nil && sil.Phase == "running"
	})
	if s := r.Get(svc); s.NotifyStatus != "serving" {
		t.Errorf("STATUS=: %q", s.NotifyStatus)
	}

	// Another process of the host says READY=1 for silent (network: host,
	// so it can reach the socket): not from the container, ignored.
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: "@reconciled-notify/" + silent, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("READY=1\nSTATUS=forged")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(time.Second)
	r = e.waitFor("status", 5*time.Second, func(*report) bool { return true })
	if sil := r.Get(silent); sil.Ready || sil.NotifyStatus != "" {
		t.Errorf("a forged READY=1 counted: %+v", sil)
	}
	if b := r.Get(blocked); b == nil || b.Phase != "pending" || b.Message != "waiting for "+silent+": not ready yet" {
		t.Errorf("blocked: %+v", b)
	}

	// A restarted daemon knows that svc's run said READY=1, and that
	// silent's did not.
	pid := r.Get(svc).Pid
	e.restartDaemon(svc, pid)
	r = e.waitFor("silent running again", 30*time.Second, func(r *report) bool {
		c := r.Get(silent)
		return c != nil && c.Phase == "running"
	})
	if s := r.Get(svc); s.Pid != pid || !s.Ready || s.NotifyStatus != "serving" || s.Restarts != 0 {
		t.Errorf("svc after a daemon restart: %+v", s)
	}
	if sil := r.Get(silent); sil.Ready {
		t.Errorf("silent ready after a daemon restart: %+v", sil)
	}
}

// Exec probes run as children of the run's probe server (a machine-code
// process started once per run), not through the exec stage each time:
// the probe's parent is the server, the same one from probe to probe.
func TestHealthExecProbeServer(t *testing.T) {
	e := newEnv(t)
	app := e.name("app")
	e.write("app.yaml", probeManifest(app, "exec sleep 100000",
		"  health: {exec: [/bin/sh, -c, \"echo $PPID $(tr '\\\\0' ' ' < /proc/$PPID/cmdline)\"], interval: 200ms, timeout: 5s}\n"))
	e.start()
	c := e.waitHealth(app, "healthy", 30*time.Second)
	first := c.HealthOutput
	if !strings.Contains(first, "exited with 0: ") || !strings.HasSuffix(strings.TrimSpace(first), "reconciled-probe") {
		t.Fatalf("the probe's parent: %q", first)
	}
	time.Sleep(time.Second) // more probes
	if c = e.statusOf(app); c.HealthOutput != first {
		t.Errorf("the probe server changed: %q then %q", first, c.HealthOutput)
	}
}
