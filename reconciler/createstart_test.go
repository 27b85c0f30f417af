package reconciler

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/actual"
)

// createStarter is the fake executor with CreateStart (CreateStarter):
// startErr, when set, fails the start part of the next CreateStart after
// a create that succeeded, as a process whose exec fails does.
type createStarter struct {
	*fakeExecutor
	startErr error
}

func (f *createStarter) CreateStart(ctx context.Context, id string, spec *specs.Spec) (bool, error) {
	leave, err := f.enter("createstart", id)
	if err != nil {
		return false, err
	}
	defer leave()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.records[id]; !ok {
		return false, errors.New("created before its record was written")
	}
	if f.cs[id] != nil {
		return false, errors.New("container " + id + " exists")
	}
	c := &fakeContainer{status: actual.StatusCreated, alive: true, exited: make(chan struct{})}
	f.cs[id] = c
	if err := f.startErr; err != nil {
		f.startErr = nil
		return true, err // created, not started
	}
	c.status = actual.StatusRunning
	return true, nil
}

// A create followed at once by a start is one CreateStart call where the
// executor has it; the events, the record written ahead and a failure's
// attribution (create or start) stay what the two calls give.
func TestLoopCreateStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &createStarter{fakeExecutor: newFakeExecutor()}
		var rec eventRecorder
		l := runLoop(t, Config{Executor: f, Observer: f, Recorder: f, Workers: 2, OnEvent: rec.add})
		l.SetDesired(want(withSpec(def("web"))...))
		eventually(t, "web runs", func() bool { return f.running("web") })
		if got, want := f.callsFor("web"), []string{"createstart web"}; !slices.Equal(got, want) {
			t.Fatalf("calls for web = %q, want %q", got, want)
		}
		wantEvents := []string{
			"web | create | begin | created: new manifest web.yaml",
			"web | start | begin | created: new manifest web.yaml",
		}
		if got := rec.summary(); !slices.Equal(got, wantEvents) {
			t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantEvents, "\n"))
		}

		// Recreated for a new definition: stop and delete as before,
		// then create and start in one call.
		l.SetDesired(want(withSpec(def("web", hash("h2", "b2")))...))
		eventually(t, "web recreated", func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.records["web"].Applied.Hash == "h2" && f.cs["web"] != nil && f.cs["web"].status == actual.StatusRunning
		})
		want2 := []string{"createstart web", "kill web SIGTERM", "wait web", "delete web", "createstart web"}
		if got := f.callsFor("web"); !slices.Equal(got, want2) {
			t.Fatalf("calls for web = %q, want %q", got, want2)
		}

		// The start part fails: the failure is the start's, and the next
		// try starts the container that was created (Start alone).
		rec = eventRecorder{}
		f.mu.Lock()
		f.startErr = errors.New("exec of the container's process: no such file or directory")
		f.mu.Unlock()
		l.SetDesired(want(withSpec(def("web", hash("h2", "b2")), def("db"))...))
		eventually(t, "db runs", func() bool { return f.running("db") })
		if got, want := f.callsFor("db"), []string{"createstart db", "start db"}; !slices.Equal(got, want) {
			t.Fatalf("calls for db = %q, want %q", got, want)
		}
		failed := false
		for _, s := range rec.summary() {
			if strings.HasPrefix(s, "db | create | failed") {
				t.Errorf("a failed start reported as the create's: %s", s)
			}
			if strings.HasPrefix(s, "db | start | failed | ") && strings.Contains(s, "exec of the container's process") {
				failed = true
			}
		}
		if !failed {
			t.Errorf("no failed start reported for db in:\n%s", strings.Join(rec.summary(), "\n"))
		}

		// The create part fails: the create's failure, nothing started.
		rec = eventRecorder{}
		f.mu.Lock()
		f.hook = func(op, id string) error {
			if op == "createstart" && id == "cache" {
				return errors.New("no spare cgroup")
			}
			return nil
		}
		f.mu.Unlock()
		l.SetDesired(want(withSpec(def("web", hash("h2", "b2")), def("db"), def("cache"))...))
		eventually(t, "the failed create is reported", func() bool {
			for _, s := range rec.summary() {
				if strings.HasPrefix(s, "cache | create | failed | ") && strings.Contains(s, "no spare cgroup") {
					return true
				}
			}
			return false
		})
		for _, s := range rec.summary() {
			if strings.HasPrefix(s, "cache | start") {
				t.Errorf("a start reported for a create that failed: %s", s)
			}
		}
	})
}
