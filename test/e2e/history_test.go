package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// What `status NAME` says of a container's past is right across restarts
// and replacements: the last events survive a daemon restart (and go with
// the manifest), EXIT is the last exit of the current definition (a
// restart's, not that of the container an edit replaced), and
// `runtime list` shows pid 0 for a stopped container, as runc does.
func TestStatusHistory(t *testing.T) {
	e := newEnv(t)
	e.start()
	web, crash, once := e.name("web"), e.name("crash"), e.name("once")
	e.write("web.yaml", manifest(web, "echo one; exec sleep 100000", ""))
	e.write("crash.yaml", manifest(crash, "sleep 1; exit 3", ""))
	e.write("once.yaml", manifest(once, "exit 0", "  restart: never\n"))
	first := e.waitRunning(web, 30*time.Second)

	// An edit replaces web: SIGKILL (137) ends the old one, which is not
	// the new one's exit.
	e.write("web.yaml", manifest(web, "echo two; exec sleep 100000", ""))
	r := e.waitFor(web+" replaced", 30*time.Second, func(r *report) bool {
		c := r.Get(web)
		return c != nil && c.Phase == "running" && c.Pid != first.Pid
	})
	if c := r.Get(web); c.ExitCode != nil {
		t.Errorf("%s runs since the edit and never exited, but EXIT is %d (the replaced container's)", web, *c.ExitCode)
	}
	// A restart of the same definition shows the exit that caused it.
	r = e.waitFor(crash+" restarted", 30*time.Second, func(r *report) bool {
		c := r.Get(crash)
		return c != nil && c.Restarts >= 1
	})
	if c := r.Get(crash); c.ExitCode == nil || *c.ExitCode != 3 {
		t.Errorf("%s restarted after exit 3: EXIT %v", crash, c.ExitCode)
	}

	// runtime list: the stopped container has no PID any more.
	e.waitFor(once+" exited", 30*time.Second, func(r *report) bool {
		c := r.Get(once)
		return c != nil && c.Phase == "exited"
	})
	st, ok := states(t, filepath.Join(e.state, "runtime"))[once]
	if !ok || st.Status != "stopped" || st.Pid != 0 {
		t.Errorf("runtime list: %s is %+v, want stopped with pid 0", once, st)
	}

	// The daemon restarts: web's events are still there, in order.
	before := e.statusOf(web).Events
	if len(before) < 4 {
		t.Fatalf("events of %s before the restart: %+v", web, before)
	}
	c := e.restartDaemon(web, e.statusOf(web).Pid)
	after := e.statusOf(web).Events
	if len(after) < len(before) {
		t.Fatalf("events of %s after a daemon restart:\n%+v\nbefore:\n%+v", web, after, before)
	}
	for i := range before {
		if after[i].Action != before[i].Action || after[i].Reason != before[i].Reason || !after[i].Time.Equal(before[i].Time) {
			t.Errorf("event %d after the restart: %+v, before: %+v", i, after[i], before[i])
		}
	}
	if last := after[len(after)-1]; last.Action != "adopted" {
		t.Errorf("last event after the restart: %+v, want adopted", last)
	}
	if c.ExitCode != nil {
		t.Errorf("EXIT of %s after the restart: %d, want none", web, *c.ExitCode)
	}

	// Removing the manifest removes the events.
	events := filepath.Join(e.state, "events", web+".json")
	if _, err := os.Stat(events); err != nil {
		t.Errorf("events file: %v", err)
	}
	e.deleteGone("web.yaml", web, c.Pid)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, err := os.Stat(events)
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s left after its manifest was removed: %v", events, err)
			break
		}
	}
	e.stop(syscall.SIGTERM)
	if out, _ := os.ReadFile(e.stderr); strings.Contains(string(out), "unable to save") {
		t.Errorf("daemon log:\n%s", out)
	}
}
