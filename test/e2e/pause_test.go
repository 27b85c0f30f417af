package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cli runs a reconciled command against the test's state directory.
func (e *env) cli(args ...string) string {
	e.t.Helper()
	out, err := exec.Command(bin, append(args, "--state", e.state)...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("reconciled %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// A paused container is the operator's decision: a manifest edit waits
// until it is resumed, then applies; removing its manifest still removes
// it (the daemon thaws it to stop it).
func TestPausedContainerWaitsForResume(t *testing.T) {
	e := newEnv(t)
	t0 := time.Now()
	e.start()
	web := e.name("web")
	e.write("web.yaml", manifest(web, sleepForever, ""))
	first := e.waitRunning(web, 30*time.Second)

	t.Logf("%v: running as pid %d; pausing and editing", time.Since(t0), first.Pid)
	e.cli("pause", web)
	e.waitSeen("web.yaml", e.write("web.yaml", manifest(web, "echo edited; exec sleep 100002", "")))
	r := e.waitFor(web+" change pending", 30*time.Second, func(r *report) bool {
		c := r.Get(web)
		return c != nil && strings.Contains(c.Message, "paused: change pending")
	})
	if c := r.Get(web); c.Pid != first.Pid || !alive(first.Pid) {
		t.Fatalf("a paused container was recreated: pid %d -> %d", first.Pid, c.Pid)
	}

	t.Logf("%v: change pending; resuming", time.Since(t0))
	e.cli("resume", web)
	r = e.waitFor(web+" recreated after resume", 30*time.Second, func(r *report) bool {
		c := r.Get(web)
		return c != nil && c.Phase == "running" && c.Pid > 0 && c.Pid != first.Pid
	})
	second := r.Get(web)
	t.Logf("%v: recreated as pid %d; pausing and removing the manifest", time.Since(t0), second.Pid)

	e.cli("pause", web)
	if err := os.Remove(filepath.Join(e.manifests, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	e.waitFor(web+" removed while paused", 30*time.Second, func(r *report) bool { return r.Get(web) == nil })
	t.Logf("%v: removed", time.Since(t0))
	deadline := time.Now().Add(10 * time.Second)
	for alive(second.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d of the removed paused container still runs", second.Pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
