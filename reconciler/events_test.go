package reconciler

import (
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"reconciled.dev/reconciled/desired"
)

// eventRecorder collects what the loop reports through Config.OnEvent.
type eventRecorder struct {
	mu  sync.Mutex
	evs []Event
}

func (r *eventRecorder) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e)
}

func (r *eventRecorder) summary() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		s := []string{e.Container, string(e.Action)}
		switch e.Kind {
		case EventBegin:
			s = append(s, "begin", e.Reason)
		case EventFailed:
			s = append(s, "failed", e.Err.Error())
			if e.Terminal {
				s = append(s, "terminal")
			}
		case EventStopTimedOut:
			s = append(s, "timed out", e.Signal, e.Timeout.String())
		}
		if e.Time.IsZero() {
			s = append(s, "no time")
		}
		out = append(out, strings.Join(s, " | "))
	}
	return out
}

// The loop reports every action it begins, each failure and a stop that
// timed out through OnEvent, whatever its log says.
func TestLoopEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		var rec eventRecorder
		l := runLoop(t, Config{Executor: f, Observer: f, Recorder: f, Workers: 2, OnEvent: rec.add})
		web := withSpec(def("web", func(c *desired.Container) { c.StopTimeout = 20 * time.Millisecond }))
		l.SetDesired(want(web...))
		eventually(t, "web runs", func() bool { return f.running("web") })
		f.mu.Lock()
		f.cs["web"].ignoreTerm = true
		f.mu.Unlock()
		l.SetDesired(want())
		eventually(t, "web deleted", func() bool { return !f.exists("web") })
		got := rec.summary()
		wantEvents := []string{
			"web | create | begin | created: new manifest web.yaml",
			"web | start | begin | created: new manifest web.yaml",
			"web | stop | begin | deleted: manifest removed",
			"web | stop | timed out | SIGTERM | 20ms",
			"web | delete | begin | deleted: manifest removed",
		}
		if strings.Join(got, "\n") != strings.Join(wantEvents, "\n") {
			t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantEvents, "\n"))
		}

		// A failed action.
		rec = eventRecorder{}
		l.SetDesired(want(withSpec(def("db", func(c *desired.Container) { c.StopSignal = "SIGNOPE" }))...))
		eventually(t, "db runs", func() bool { return f.running("db") })
		l.SetDesired(want())
		eventually(t, "the failure is reported", func() bool {
			for _, s := range rec.summary() {
				if strings.HasPrefix(s, "db | stop | failed | ") && strings.HasSuffix(s, " | terminal") && strings.Contains(s, "SIGNOPE") {
					return true
				}
			}
			return false
		})
	})
}
