package actual

import (
	"time"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/executor"
)

// Status is the executor's recorded status of a container: what its state
// file says, before any check against the kernel. It is the executor's
// own type and values (one home for them).
type Status = executor.Status

const (
	// StatusCreating: the executor began creating the container and did not
	// finish (its state is half-written).
	StatusCreating = executor.StatusCreating
	// StatusCreated: the init process waits for start.
	StatusCreated = executor.StatusCreated
	// StatusRunning: the user's process was started.
	StatusRunning = executor.StatusRunning
	// StatusStopped: the init process exited.
	StatusStopped = executor.StatusStopped
)

// Container is one container reconciled created, as observed now.
//
// Status says what the executor recorded; InitAlive and CgroupHasProcs say
// what the kernel says. They may disagree (a container recorded running
// whose init died while the daemon was down): the planner believes the
// kernel.
type Container struct {
	// Name is the container's name, which is also its executor ID.
	Name string `json:"name"`

	Status Status `json:"status"`
	// Pid is the init process (0 when none was recorded) and PidStartTime
	// its start time in clock ticks since boot (field 22 of
	// /proc/PID/stat), recorded when it was created.
	Pid          int    `json:"pid,omitempty"`
	PidStartTime uint64 `json:"pidStartTime,omitempty"`
	// InitAlive is true when Pid exists and its start time is PidStartTime,
	// that is, when it is still our init and not a reused PID.
	InitAlive bool `json:"initAlive"`
	// CgroupHasProcs is true when the container's cgroup still holds a
	// process (the init, or processes it left behind).
	CgroupHasProcs bool `json:"cgroupHasProcs"`
	// Paused is true when the container's cgroup is frozen.
	Paused bool `json:"paused,omitempty"`

	// Exited is true when the init's exit status is known: ExitCode holds
	// it (128+N for a process killed by signal N) and OOMKilled says
	// whether the kernel's OOM killer killed something in the cgroup during
	// this run.
	Exited    bool `json:"exited,omitempty"`
	ExitCode  int  `json:"exitCode,omitempty"`
	OOMKilled bool `json:"oomKilled,omitempty"`

	// Created, Started and Finished are when the container was created,
	// when its process was started and when its init exited (zero: not yet,
	// or unknown).
	Created  time.Time `json:"created,omitzero"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`

	// SpecHash and BaseHash are desired.Container.Hash and BaseHash of the
	// definition the container runs now: the one it was created from, or
	// the one last applied in place. Empty when unknown.
	SpecHash string `json:"specHash,omitempty"`
	BaseHash string `json:"baseHash,omitempty"`

	// Health is the daemon's verdict of the container's probe (spec.health)
	// for the current run, HealthFailures the current streak of failed
	// probes, and Ready whether the container is ready (healthy with a
	// probe, running without). The daemon fills them in from its prober
	// when it observes; they are not stored: a restarted daemon probes
	// again from HealthStarting. "" is unknown (an observer without a
	// prober): the planner treats it as HealthNone.
	Health         HealthState `json:"health,omitempty"`
	HealthFailures int         `json:"healthFailures,omitempty"`
	Ready          bool        `json:"ready,omitempty"`

	// Record is what the daemon keeps about the container.
	Record
}

// HealthState is a container's health, as status shows it.
type HealthState string

const (
	HealthNone      HealthState = "none"      // no probe
	HealthStarting  HealthState = "starting"  // no verdict yet
	HealthHealthy   HealthState = "healthy"   // the last probe passed
	HealthUnhealthy HealthState = "unhealthy" // retries probes in a row failed
)

// Record is what the daemon writes about a container besides the executor's
// state, so that a daemon restart loses nothing. The reconciler's loop writes
// it; the observer reads it back into Container.
type Record struct {
	// Applied is the definition the container was created from, or last
	// updated in place to. Nil when unknown.
	Applied *desired.Container `json:"applied,omitempty"`
	// Restarts counts the restarts by restart policy since the container
	// was created from its current definition.
	Restarts int `json:"restarts,omitempty"`
	// Failures counts the consecutive short runs (exits after less than
	// the backoff reset time) before the current run. The crash-loop
	// backoff delay after the current run ends is computed from it.
	Failures int `json:"failures,omitempty"`
	// StopRequested is when reconciled sent the container its stop signal
	// (zero: no stop under way).
	StopRequested time.Time `json:"stopRequested,omitzero"`
}

// Live reports whether the container's init is alive: recorded as created or
// running, with the kernel agreeing.
func (c *Container) Live() bool {
	return (c.Status == StatusCreated || c.Status == StatusRunning) && c.InitAlive
}

// Set is every container reconciled created, by name.
type Set map[string]*Container
