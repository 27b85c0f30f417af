package daemon

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
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
}

func newEventLog() *eventLog {
	return &eventLog{byName: map[string][]Event{}, lastErr: map[string]string{}, changed: func() {}}
}

func (l *eventLog) add(name string, e Event) {
	l.mu.Lock()
	evs := l.byName[name]
	if n := len(evs); n > 0 && evs[n-1].Action == e.Action && evs[n-1].Reason == e.Reason && e.Time.Sub(evs[n-1].Time) < time.Second {
		l.mu.Unlock()
		return // the same event seen twice (a log line and a status change)
	}
	evs = append(evs, e)
	if len(evs) > MaxEvents {
		evs = slices.Delete(evs, 0, len(evs)-MaxEvents)
	}
	l.byName[name] = evs
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
}

// eventHandler is a slog.Handler in front of the daemon's own handler: it
// passes every record on and turns the loop's records about a container's
// actions ("create" with a reason, "action failed ...") into events. The
// loop logs every action it takes with its reason; this way the events are
// exactly what it did, without the loop knowing about them.
type eventHandler struct {
	next  slog.Handler
	log   *eventLog
	attrs []slog.Attr
}

func (h *eventHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return true // events are recorded whatever the log level
}

func (h *eventHandler) Handle(ctx context.Context, r slog.Record) error {
	var container, reason, action, errText string
	visit := func(a slog.Attr) bool {
		switch a.Key {
		case "container":
			container = a.Value.String()
		case "reason":
			reason = a.Value.String()
		case "action":
			action = a.Value.String()
		case "err":
			errText = a.Value.String()
		}
		return true
	}
	for _, a := range h.attrs {
		visit(a)
	}
	r.Attrs(visit)
	if container != "" {
		switch {
		case reason != "" && isAction(r.Message):
			h.log.add(container, Event{Time: r.Time, Action: r.Message, Reason: reason})
		case errText != "" && action != "":
			h.log.add(container, Event{Time: r.Time, Action: "failed", Reason: action + " failed: " + errText})
		case r.Message == "stop timed out, killing":
			h.log.add(container, Event{Time: r.Time, Action: "stop", Reason: "stop timed out, killed with SIGKILL"})
		}
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func isAction(msg string) bool {
	switch msg {
	case "create", "start", "stop", "delete", "update":
		return true
	}
	return false
}

func (h *eventHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &eventHandler{next: h.next.WithAttrs(attrs), log: h.log, attrs: append(slices.Clip(h.attrs), attrs...)}
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	// The loop uses no groups; attributes under one are not events.
	return &eventHandler{next: h.next.WithGroup(name), log: h.log}
}
