package daemon

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/reconciler"
)

// notifier tells systemd (sd_notify, Type=notify) how the daemon is:
//
//	READY=1      after the first pass over every container (planned, actions
//	             queued), and again after each reload's pass
//	RELOADING=1  on SIGHUP, until that pass
//	STATUS=...   "12 running, 1 backoff, 1 invalid file", when it changes
//	WATCHDOG=1   from the loop's own goroutine (reconciler.Config.Heartbeat),
//	             every half WatchdogSec: a loop that is stuck stops petting
//	STOPPING=1   when the daemon begins to stop
//
// Without NOTIFY_SOCKET (not started by systemd) every call is a no-op.
type notifier struct {
	log      *slog.Logger
	enabled  bool
	watchdog time.Duration // WatchdogSec; 0 when off

	// readyPending: the next pass is the first after a start or a reload.
	readyPending atomic.Bool
	lastPet      atomic.Int64 // unix nanos of the last WATCHDOG=1

	// blockAt, when set, makes the heartbeat block forever from then on:
	// a test hook (--test-block-loop-after) that wedges the loop.
	blockAt time.Time

	// summary is the current STATUS= text (publisher.Summary).
	summary func() string

	mu     sync.Mutex
	status string
}

func newNotifier(log *slog.Logger, blockAfter time.Duration) *notifier {
	n := &notifier{log: log}
	n.enabled = os.Getenv("NOTIFY_SOCKET") != ""
	if wd, err := sddaemon.SdWatchdogEnabled(false); err != nil {
		log.Warn("ignoring systemd's watchdog settings", "err", err)
	} else {
		n.watchdog = wd
	}
	if blockAfter > 0 {
		n.blockAt = time.Now().Add(blockAfter)
	}
	n.readyPending.Store(true)
	return n
}

// heartbeatEvery is how often the loop must call Heartbeat: half the
// watchdog, or 0 (the loop's default) when there is no watchdog.
func (n *notifier) heartbeatEvery() time.Duration {
	if n.watchdog <= 0 {
		return 0
	}
	return n.watchdog / 2
}

// Heartbeat is the loop's heartbeat (reconciler.Config.Heartbeat): it pets
// the watchdog and, after the first pass since a start or reload, says
// READY=1.
func (n *notifier) Heartbeat(pass bool) {
	if !n.blockAt.IsZero() && time.Now().After(n.blockAt) {
		n.log.Warn("--test-block-loop-after: blocking the reconcile loop for good (a test of the watchdog)")
		select {} // the loop's goroutine never comes back
	}
	if n.watchdog > 0 {
		now := time.Now()
		// Pets at most a few times per period: passes can come often.
		if now.Sub(time.Unix(0, n.lastPet.Load())) >= n.watchdog/4 {
			n.lastPet.Store(now.UnixNano())
			n.send("WATCHDOG=1")
		}
	}
	if pass && n.readyPending.CompareAndSwap(true, false) {
		s := "started"
		if n.summary != nil {
			s = n.summary()
		}
		n.mu.Lock()
		n.status = s
		n.mu.Unlock()
		n.send("READY=1\nSTATUS=" + s)
		n.log.Info("ready: first pass over every container done")
	}
}

// Reloading says RELOADING=1; the next pass says READY=1 again.
func (n *notifier) Reloading() {
	var ts unix.Timespec
	msg := "RELOADING=1\nSTATUS=reloading: reading every manifest again"
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		// systemd 253 and later want the time of the request with it.
		msg += fmt.Sprintf("\nMONOTONIC_USEC=%d", ts.Nano()/1000)
	}
	n.send(msg)
}

// Rescanned marks that a reload's re-read was handed to the loop: the
// loop's next pass ends the reload.
func (n *notifier) Rescanned() { n.readyPending.Store(true) }

// Stopping says STOPPING=1.
func (n *notifier) Stopping() { n.send("STOPPING=1\nSTATUS=stopping; containers keep running") }

// SetStatus says STATUS=s when it changed.
func (n *notifier) SetStatus(s string) {
	n.mu.Lock()
	changed := s != n.status
	n.status = s
	n.mu.Unlock()
	if changed {
		n.send("STATUS=" + s)
	}
}

func (n *notifier) send(state string) {
	if !n.enabled {
		return
	}
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		n.log.Warn("unable to notify systemd", "state", strings.SplitN(state, "\n", 2)[0], "err", err)
	}
}

// statusLine sums up the containers' phases and the files for STATUS=:
// "12 running, 1 backoff, 1 invalid file" (phases in the order of a
// container's life, zero counts left out; "no containers" when there are
// none).
func statusLine(phases []string, want *desired.Set) string {
	counts := map[string]int{}
	for _, p := range phases {
		counts[p]++
	}
	var parts []string
	for _, p := range []reconciler.Phase{
		reconciler.PhaseRunning, reconciler.PhasePending, reconciler.PhaseCreating, reconciler.PhaseStopping,
		reconciler.PhaseExited, reconciler.PhaseBackoff, reconciler.PhaseInvalid,
	} {
		if c := counts[string(p)]; c > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c, p))
		}
		delete(counts, string(p))
	}
	for _, p := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%d %s", counts[p], p))
	}
	if len(parts) == 0 {
		parts = append(parts, "no containers")
	}
	if want != nil {
		bad := 0
		for _, f := range want.Files {
			if len(f.Errors) > 0 {
				bad++
			}
		}
		switch {
		case bad == 1:
			parts = append(parts, "1 invalid file")
		case bad > 1:
			parts = append(parts, fmt.Sprintf("%d invalid files", bad))
		}
	}
	return strings.Join(parts, ", ")
}
