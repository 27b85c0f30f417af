package daemontest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/internal/daemon"
)

// Report is what `reconciled status -o json` prints, with a lookup by
// name.
type Report struct{ daemon.Report }

// Get returns the container called name, or nil when the report has none.
func (r *Report) Get(name string) *daemon.ContainerStatus {
	for i := range r.Containers {
		if r.Containers[i].Name == name {
			return &r.Containers[i]
		}
	}
	return nil
}

// Running says whether every container named runs as wanted: phase
// running, a PID, and no message.
func Running(r *Report, names ...string) bool {
	for _, n := range names {
		c := r.Get(n)
		if c == nil || c.Phase != "running" || c.Pid <= 0 || c.Message != "" {
			return false
		}
	}
	return true
}

// Daemon is a daemon as its tests reach it.
type Daemon struct {
	Bin   string // the reconciled binary
	State string // the daemon's --state directory
	// Exited, when not nil, is closed once the daemon has exited: a wait
	// then fails at once instead of at its timeout, printing Log's text
	// (the tail of the daemon's output, say) when Log is not nil.
	Exited <-chan struct{}
	Log    func() string
}

// Status runs `reconciled status --state STATE -o json`.
func (d Daemon) Status() (*Report, error) {
	var r Report
	if err := d.status(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

// StatusOf runs `reconciled status --state STATE NAME -o json`: the
// container with its events.
func (d Daemon) StatusOf(name string) (*daemon.ContainerStatus, error) {
	var c daemon.ContainerStatus
	if err := d.status(&c, name); err != nil {
		return nil, err
	}
	return &c, nil
}

func (d Daemon) status(out any, name ...string) error {
	args := append(append([]string{"status", "--state", d.State}, name...), "-o", "json")
	data, err := exec.Command(d.Bin, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("reconciled %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return fmt.Errorf("reconciled %s: %w", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("reconciled %s: %w\n%s", strings.Join(args, " "), err, data)
	}
	return nil
}

// WaitFor polls Status every 100ms until cond holds for a report, and
// returns that report. It fails t after timeout, saying what it waited
// for, the last error and the last report; or as soon as Exited is
// closed, with the daemon's Log.
func (d Daemon) WaitFor(t testing.TB, what string, timeout time.Duration, cond func(*Report) bool) *Report {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *Report
	var lastErr error
	for {
		r, err := d.Status()
		if err == nil {
			last = r
			if cond(r) {
				return r
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			data, _ := json.MarshalIndent(last, "", "  ")
			t.Fatalf("timed out after %s waiting for %s (last error: %v)\nlast status:\n%s", timeout, what, lastErr, data)
		}
		select {
		case <-d.Exited: // never when nil
			var log string
			if d.Log != nil {
				log = d.Log()
			}
			t.Fatalf("daemon exited while waiting for %s:\n%s", what, log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// WaitRunning waits until every container named runs as wanted (Running)
// and returns the report that says so.
func (d Daemon) WaitRunning(t testing.TB, timeout time.Duration, names ...string) *Report {
	t.Helper()
	return d.WaitFor(t, strings.Join(names, ", ")+" running", timeout, func(r *Report) bool { return Running(r, names...) })
}

// Manifest is a manifest of container name on the host's root, read-only,
// as nobody, stopped with SIGKILL after 1s, running command with
// /bin/sh -c. extra is added to its spec (lines indented by two spaces).
func Manifest(name, command, extra string) string {
	return fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: %s
spec:
  root: {path: /, readonly: true}
  command: ["/bin/sh", "-c", %q]
  user: "65534:65534"
  stop: {signal: SIGKILL, timeout: 1s}
%s`, name, command, extra)
}
