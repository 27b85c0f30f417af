package daemontest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/daemon"
)

// contract is the JSON of `reconciled status -o json` that the end-to-end
// tests read, spelled out here: they decode it with the daemon's own
// types, which follow a renamed key, so this is where a rename fails.
const contract = `{
  "containers": [{"name": "web", "phase": "running", "pid": 7, "restarts": 1,
    "exitCode": 137, "oomKilled": true, "source": "/m/web.yaml", "runtime": "runc",
    "specHash": "h", "message": "m", "health": "unhealthy", "ready": false,
    "healthFailures": 3, "healthOutput": "o",
    "events": [{"time": "2024-01-02T03:04:05Z", "action": "start", "reason": "r"}]}],
  "files": [{"path": "/m/web.yaml", "valid": false, "contentHash": "c",
    "errors": [{"message": "e"}]}],
  "revision": "rev", "cgroupDriver": "systemd", "logDriver": "journald",
  "daemon": {"pid": 1}
}`

func TestReportDecodesContract(t *testing.T) {
	dec := json.NewDecoder(strings.NewReader(contract))
	dec.DisallowUnknownFields()
	var got Report
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("the status JSON the end-to-end tests read no longer decodes: %v", err)
	}
	code := 137
	want := Report{daemon.Report{
		Containers: []daemon.ContainerStatus{{
			Name: "web", Phase: "running", Pid: 7, Restarts: 1, ExitCode: &code, OOMKilled: true,
			Source: "/m/web.yaml", Runtime: "runc", SpecHash: "h", Message: "m",
			Health: "unhealthy", HealthFailures: 3, HealthOutput: "o",
			Events: []daemon.Event{{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Action: "start", Reason: "r"}},
		}},
		Files:    []daemon.FileReport{{Path: "/m/web.yaml", ContentHash: "c", Errors: []*desired.Error{{Msg: "e"}}}},
		Revision: "rev", CgroupDriver: "systemd", LogDriver: "journald",
		Daemon: daemon.DaemonInfo{Pid: 1},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %+v\nwant %+v", got, want)
	}
	if c := got.Get("web"); c != &got.Containers[0] {
		t.Errorf("Get(web) = %p, want the report's container %p", c, &got.Containers[0])
	}
	if c := got.Get("db"); c != nil {
		t.Errorf("Get(db) = %+v, want nil", c)
	}
}

// A Report prints as the daemon's: the wrapper adds no level.
func TestReportEncodesAsDaemons(t *testing.T) {
	var r Report
	if err := json.Unmarshal([]byte(contract), &r); err != nil {
		t.Fatal(err)
	}
	a, errA := json.Marshal(&r)
	b, errB := json.Marshal(&r.Report)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Errorf("Report encodes as %s (%v), daemon.Report as %s (%v)", a, errA, b, errB)
	}
}

func TestRunning(t *testing.T) {
	r := &Report{daemon.Report{Containers: []daemon.ContainerStatus{
		{Name: "up", Phase: "running", Pid: 3},
		{Name: "noted", Phase: "running", Pid: 4, Message: "paused: change pending"},
		{Name: "down", Phase: "exited"},
	}}}
	for _, tc := range []struct {
		names []string
		want  bool
	}{
		{[]string{"up"}, true},
		{[]string{"up", "noted"}, false},
		{[]string{"down"}, false},
		{[]string{"up", "missing"}, false},
	} {
		if got := Running(r, tc.names...); got != tc.want {
			t.Errorf("Running(%v) = %v, want %v", tc.names, got, tc.want)
		}
	}
}

// fatalRecorder records the failure of a wait instead of failing the
// test; it ends the goroutine as t.Fatalf does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// waitFailure runs d.WaitFor for a condition that never holds and
// returns how it failed.
func waitFailure(d Daemon, timeout time.Duration) string {
	f := &fatalRecorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.WaitFor(f, "web running", timeout, func(*Report) bool { return false })
	}()
	<-done
	return f.msg
}

// A wait that fails says what it waited for and why: the daemon's exit
// with its log, or the timeout with the last error.
func TestWaitForFailures(t *testing.T) {
	exited := make(chan struct{})
	close(exited)
	d := Daemon{Bin: "/bin/false", State: t.TempDir(), Exited: exited, Log: func() string { return "the daemon's last words" }}
	if msg := waitFailure(d, time.Hour); !strings.Contains(msg, "daemon exited while waiting for web running") || !strings.Contains(msg, "the daemon's last words") {
		t.Errorf("wait on an exited daemon failed with %q", msg)
	}
	d.Exited, d.Log = nil, nil
	if msg := waitFailure(d, 0); !strings.Contains(msg, "timed out after 0s waiting for web running") || !strings.Contains(msg, "exit status 1") {
		t.Errorf("wait that timed out failed with %q", msg)
	}
}
