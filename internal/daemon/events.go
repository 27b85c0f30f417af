package daemon

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"reconciled.dev/reconciled/reconciler"
)

// MaxEvents is how many events are kept per container (status NAME shows
// them).
const MaxEvents = 20

// Event is one thing the daemon did or saw about a container, with its
// reason in words: "recreated: spec.command changed".
type Event struct {
	Time time.Time `json:"time"`
	// Action is what was done (create, start, stop, delete, update), or
	// "failed" for an action that failed, or the phase the container
	// entered for what the daemon saw (backoff, exited, invalid, kept).
	Action string `json:"action"`
	Reason string `json:"reason"`
}

// eventLog keeps the last MaxEvents events of each container.
type eventLog struct {
	mu      sync.Mutex
	byName  map[string][]Event
	lastErr map[string]string
	changed func() // called (without the lock) after each new event
	// dir, when set (persistTo), keeps each container's events in a file;
	// storeLog reports what cannot be written there.
	dir      string
	storeLog *slog.Logger
}

func newEventLog() *eventLog {
	return &eventLog{byName: map[string][]Event{}, lastErr: map[string]string{}, changed: func() {}}
}

func (l *eventLog) add(name string, e Event) {
	l.mu.Lock()
	evs := l.byName[name]
	if n := len(evs); n > 0 && evs[n-1].Action == e.Action && evs[n-1].Reason == e.Reason && e.Time.Sub(evs[n-1].Time) < time.Second {
		l.mu.Unlock()
		return // the same event seen twice (the loop's and a status change)
	}
	evs = append(evs, e)
	if len(evs) > MaxEvents {
		evs = slices.Delete(evs, 0, len(evs)-MaxEvents)
	}
	l.byName[name] = evs
	l.save(name, evs)
	if e.Action == "failed" {
		l.lastErr[name] = e.Reason
	}
	l.mu.Unlock()
	l.changed()
}

// clearError forgets container name's last error (it runs as wanted).
func (l *eventLog) clearError(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.lastErr, name)
}

func (l *eventLog) events(name string) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.byName[name])
}

// last returns the newest event of container name.
func (l *eventLog) last(name string) (Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs := l.byName[name]
	if len(evs) == 0 {
		return Event{}, false
	}
	return evs[len(evs)-1], true
}

func (l *eventLog) lastError(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr[name]
}

func (l *eventLog) forget(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byName, name)
	delete(l.lastErr, name)
	l.unsave(name)
}

// fromLoop records what the loop reports (reconciler.Config.OnEvent) as
// container events: the events are exactly what it did, whatever its log
// lines say.
func (l *eventLog) fromLoop(e reconciler.Event) {
	switch e.Kind {
	case reconciler.EventBegin:
		if e.Reason != "" {
			l.add(e.Container, Event{Time: e.Time, Action: string(e.Action), Reason: e.Reason})
		}
	case reconciler.EventFailed:
		l.add(e.Container, Event{Time: e.Time, Action: "failed", Reason: fmt.Sprintf("%s failed: %v", e.Action, e.Err)})
	case reconciler.EventStopTimedOut:
		l.add(e.Container, Event{Time: e.Time, Action: "stop", Reason: stopTimedOut(e.Signal, e.Timeout)})
	}
}

// stopTimedOut is the event of a stop that ended in SIGKILL. The usual
// cause is a PID 1 without a handler for the signal (a shell, most
// programs): the kernel does not deliver it, and init: true fixes that.
func stopTimedOut(signal string, timeout time.Duration) string {
	return fmt.Sprintf("stop timed out: %s did not stop it within %s, killed with SIGKILL "+
		"(a PID 1 ignores signals it has no handler for: add init: true to the manifest, or handle %s)", signal, timeout, signal)
}
