package reconciler

import "time"

// Event is one thing a worker did to a container, for Config.OnEvent: the
// events of `status NAME` come from here, not from the loop's log lines
// (whose wording may change).
type Event struct {
	Time      time.Time
	Container string
	Kind      EventKind
	// Action is the action begun or failed, or Stop for EventStopTimedOut.
	Action Kind
	// Reason is the plan's reason for the action (EventBegin).
	Reason string
	// Err is why the action failed (EventFailed); Terminal says that it is
	// not retried.
	Err      error
	Terminal bool
	// Signal and Timeout are the stop signal that did not stop the
	// container in time (EventStopTimedOut).
	Signal  string
	Timeout time.Duration
}

// EventKind says what an Event reports.
type EventKind int

const (
	// EventBegin: an action begins.
	EventBegin EventKind = iota
	// EventFailed: an action failed.
	EventFailed
	// EventStopTimedOut: the stop signal did not stop the container within
	// its timeout; every process of it is killed with SIGKILL.
	EventStopTimedOut
)

// emit stamps e and hands it to Config.OnEvent.
func (l *Loop) emit(e Event) {
	if l.cfg.OnEvent == nil {
		return
	}
	e.Time = l.cfg.Clock.Now()
	l.cfg.OnEvent(e)
}
