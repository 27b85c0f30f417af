package main

import "reconciled.dev/reconciled/executor"

// reported is st as `runtime state` and `runtime list` print it, as runc
// does: "paused" for a frozen container, and pid 0 for a stopped one (its
// PID is no longer its process's, and may be reused).
func reported(st *executor.State) *executor.State {
	c := *st
	c.Status = executor.PausedStatus(st)
	if c.Status == executor.StatusStopped {
		c.Pid = 0
	}
	return &c
}
