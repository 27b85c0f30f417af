package reconciler

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// Crash-loop backoff: the delay before a restart starts at BackoffInitial and
// doubles with each consecutive short run up to BackoffMax; a run that lasted
// BackoffReset or longer starts the count again.
const (
	BackoffInitial = time.Second
	BackoffMax     = 5 * time.Minute
	BackoffReset   = 10 * time.Minute
)

// NextDelay is the delay before the restart that follows the failures'th
// consecutive short run (failures >= 1): 1s, 2s, 4s, ... capped at 5m.
func NextDelay(failures int) time.Duration {
	if failures < 1 {
		failures = 1
	}
	d := BackoffInitial
	for i := 1; i < failures; i++ {
		d *= 2
		if d >= BackoffMax {
			return BackoffMax
		}
	}
	return min(d, BackoffMax)
}

// Backoff says, for an exited container that is to be restarted, how many
// consecutive short runs it has now had (its own included; to be recorded
// with the next container) and when it may be restarted. A run counts as
// short unless it lasted BackoffReset or longer. When the exit time is
// unknown the restart is not delayed (next is zero).
func Backoff(c *actual.Container) (failures int, next time.Time) {
	failures = c.Failures + 1
	if !c.Started.IsZero() && !c.Finished.IsZero() && c.Finished.Sub(c.Started) >= BackoffReset {
		failures = 1
	}
	if c.Finished.IsZero() {
		return failures, time.Time{}
	}
	return failures, c.Finished.Add(NextDelay(failures))
}

// policyOrDefault is the restart policy, "always" when empty.
func policyOrDefault(p desired.RestartPolicy) desired.RestartPolicy {
	if p == "" {
		return desired.RestartAlways
	}
	return p
}

// restartWanted says whether an exited container is restarted by its policy:
// always; on-failure for a non-zero or unknown exit status or an OOM kill;
// never.
func restartWanted(p desired.RestartPolicy, c *actual.Container) bool {
	switch policyOrDefault(p) {
	case desired.RestartNever:
		return false
	case desired.RestartOnFailure:
		return !c.Exited || c.ExitCode != 0 || c.OOMKilled
	default:
		return true
	}
}

// exitWords says how a container exited: "exited with 1", "exited with 137
// (SIGKILL)", "killed by the OOM killer", "exited (status unknown)".
func exitWords(c *actual.Container) string {
	switch {
	case c.OOMKilled:
		return "killed by the OOM killer"
	case !c.Exited:
		return "exited (status unknown)"
	case c.ExitCode > 128 && c.ExitCode < 128+65:
		if name := unix.SignalName(unix.Signal(c.ExitCode - 128)); name != "" {
			return fmt.Sprintf("exited with %d (%s)", c.ExitCode, name)
		}
	}
	return fmt.Sprintf("exited with %d", c.ExitCode)
}
