package reconciler

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// Kind is what an action does.
type Kind string

const (
	// Create creates the container from Action.Desired (not started) and
	// records Action.Desired, Restarts and Failures with it.
	Create Kind = "create"
	// Start starts a created container's process.
	Start Kind = "start"
	// Stop sends Action.Signal, waits up to Action.Timeout for the init to
	// exit, then sends SIGKILL. With Action.All it signals every process in
	// the cgroup (the init is gone and left processes behind).
	Stop Kind = "stop"
	// Delete removes a container that is no longer running: its executor
	// state and its cgroup; with Action.Forget also its record.
	Delete Kind = "delete"
	// Update applies Action.Desired's resources to the live cgroup, without
	// a restart, and records Action.Desired as applied.
	Update Kind = "update"
	// Wait ends a sequence: nothing is to be done before Action.Until, when
	// the container must be planned again.
	Wait Kind = "wait"
)

// Defaults for a stop when the definition gives none (the loader normally
// fills them in): the manifest's own defaults, kept in one place.
const (
	DefaultStopSignal  = desired.DefaultStopSignal
	DefaultStopTimeout = desired.DefaultStopTimeout
)

// Action is one step for one container. The actions for one container form
// an ordered sequence: each assumes the ones before it succeeded.
type Action struct {
	Kind      Kind   `json:"kind"`
	Container string `json:"container"`
	// Reason says why, in words a person understands ("recreated:
	// spec.command changed").
	Reason string `json:"reason"`

	// Desired is the definition to create from (Create) or to apply in
	// place (Update).
	Desired *desired.Container `json:"-"`
	// Restarts and Failures are the counts to record with a new container
	// (Create); see actual.Record.
	Restarts int `json:"restarts,omitempty"`
	Failures int `json:"failures,omitempty"`

	// Signal, Timeout and All describe a Stop: Signal first, SIGKILL after
	// Timeout (0: at once); All signals every process in the cgroup.
	Signal  string        `json:"signal,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	All     bool          `json:"all,omitempty"`

	// Forget (Delete) says that the container is gone for good: its record
	// goes too.
	Forget bool `json:"forget,omitempty"`

	// Until (Wait) is when to plan the container again.
	Until time.Time `json:"until,omitzero"`
}

// String is the action in one line, for logs and tests:
// "stop web SIGTERM 10s: recreated: spec.command changed".
func (a Action) String() string {
	var b strings.Builder
	b.WriteString(string(a.Kind))
	b.WriteByte(' ')
	b.WriteString(a.Container)
	switch a.Kind {
	case Create:
		if a.Restarts != 0 || a.Failures != 0 {
			fmt.Fprintf(&b, " restarts=%d failures=%d", a.Restarts, a.Failures)
		}
	case Stop:
		fmt.Fprintf(&b, " %s %s", a.Signal, a.Timeout)
		if a.All {
			b.WriteString(" all")
		}
	case Delete:
		if a.Forget {
			b.WriteString(" forget")
		}
	case Wait:
		b.WriteString(" until " + a.Until.UTC().Format(time.RFC3339Nano))
	}
	if a.Reason != "" {
		b.WriteString(": " + a.Reason)
	}
	return b.String()
}

// Phase is a container's phase as shown to people (the status contract).
type Phase string

const (
	PhasePending  Phase = "pending"  // wanted, not created yet
	PhaseCreating Phase = "creating" // being created or started
	PhaseRunning  Phase = "running"  // its init is alive
	PhaseStopping Phase = "stopping" // a stop is under way
	PhaseExited   Phase = "exited"   // its init exited and it stays so
	PhaseBackoff  Phase = "backoff"  // exited; restarts at Status.NextTry
	PhaseInvalid  Phase = "invalid"  // named only by files that fail validation
	PhasePulling  Phase = "pulling"  // wanted; its image is being fetched
)

// Phase is the phase a container is in while this action runs.
func (a Action) Phase() Phase {
	switch a.Kind {
	case Create, Start:
		return PhaseCreating
	case Stop, Delete:
		return PhaseStopping
	case Wait:
		return PhaseBackoff
	default:
		return PhaseRunning
	}
}

// Status is what the planner says about one container.
type Status struct {
	Name  string `json:"name"`
	Phase Phase  `json:"phase"`
	// Reason says why the container is as it is or what is being done about
	// it; empty for a container that runs as wanted.
	Reason string `json:"reason,omitempty"`
	// Source is the manifest file that defines the container ("" when none
	// does any more).
	Source   string `json:"source,omitempty"`
	Restarts int    `json:"restarts,omitempty"`
	// NextTry is when a container in backoff is restarted.
	NextTry time.Time `json:"nextTry,omitzero"`
	// Errors are the validation errors of the files that name the
	// container, surfaced here; its last good definition stays in force.
	Errors []*desired.Error `json:"errors,omitempty"`

	// Desired and Actual are the inputs the status was derived from (nil
	// when absent), for displays that want more.
	Desired *desired.Container `json:"-"`
	Actual  *actual.Container  `json:"-"`
}

// ContainerPlan is the plan for one container.
type ContainerPlan struct {
	Status  Status   `json:"status"`
	Actions []Action `json:"actions,omitempty"`
}

// Result is the plan for every container.
type Result struct {
	// Containers holds one entry per container that is wanted, exists, or
	// is named by a manifest file, sorted by name.
	Containers []*ContainerPlan `json:"containers"`
	// Wake is the earliest Wait.Until in the plan: when the plan changes by
	// the passing of time alone. Zero when nothing waits.
	Wake time.Time `json:"wake,omitzero"`
}

// Actions returns every action of the plan, container by container in name
// order, each container's in sequence order.
func (r *Result) Actions() []Action {
	var out []Action
	for _, c := range r.Containers {
		out = append(out, c.Actions...)
	}
	return out
}

// Get returns the plan for one container, or nil.
func (r *Result) Get(name string) *ContainerPlan {
	i, ok := sort.Find(len(r.Containers), func(i int) int {
		return strings.Compare(name, r.Containers[i].Status.Name)
	})
	if !ok {
		return nil
	}
	return r.Containers[i]
}

// Planner holds the planner's settings. Its zero value is ready to use.
type Planner struct {
	// ChangedFields names the manifest fields that differ between the
	// definition a container was created from and the wanted one
	// ("spec.command"), for reasons. Nil, or an empty answer, gives
	// "spec changed". Meant to be desired.ChangedFields.
	ChangedFields func(old, new *desired.Container) []string
}

// Plan is Planner{}.Plan: its reasons say "spec changed" without naming
// fields. The daemon and `reconciled plan` use a Planner with
// desired.ChangedFields.
func Plan(want desired.Set, have actual.Set, now time.Time) *Result {
	return Planner{}.Plan(want, have, now)
}

// Plan decides, for every container, what to do to go from have to want at
// time now. It does no I/O and reads no clock: the same arguments always
// give the same result.
//
// The rules, container by container:
//   - wanted and absent: create and start it;
//   - present and not wanted: stop it (its stop signal, then SIGKILL after
//     its stop timeout) and delete it; but a container named by a manifest
//     file that fails validation is kept as it is;
//   - spec hash changed: stop, delete, create, start; when only the
//     resources changed (BaseHash equal) and it is alive, update in place;
//   - left half-written (recorded creating, or created with no live init):
//     delete and redo; created and never started: start;
//   - exited: restart per policy (always; on-failure = non-zero or unknown
//     exit status, or OOM kill; never) after the crash-loop backoff delay
//     (NextDelay), else keep it exited;
//   - init gone but processes left in the cgroup: kill them first;
//   - alive and as wanted: nothing, whatever the executor recorded
//     (adoption after a daemon restart is this case); but alive, running
//     and unhealthy with onUnhealthy: restart: stop, delete, create, start;
//   - the start order (spec.after, order.go): a container to be created
//     whose conditions are not met stays pending, and one to be removed
//     waits for the removed containers that wait for it.
func (p Planner) Plan(want desired.Set, have actual.Set, now time.Time) *Result {
	// Invalid files, and the names each one defines.
	invalid := want.Invalid()
	sort.Slice(invalid, func(i, j int) bool { return invalid[i].Path < invalid[j].Path })

	names := map[string]bool{}
	for n, c := range want.Containers {
		if c != nil {
			names[n] = true
		}
	}
	for n, c := range have {
		if c != nil {
			names[n] = true
		}
	}
	for _, f := range invalid {
		for _, n := range f.Containers {
			names[n] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)

	r := &Result{Containers: make([]*ContainerPlan, 0, len(sorted))}
	gone := removing(want, have, invalid)
	for _, n := range sorted {
		var bad []*desired.FileStatus
		w := want.Containers[n]
		for _, f := range invalid {
			if slices.Contains(f.Containers, n) || (w != nil && w.Source == f.Path) {
				bad = append(bad, f)
			}
		}
		cp := holdForOrder(n, w, want, have, gone, now) // spec.after (order.go)
		if cp == nil {
			cp = p.planOne(n, w, have[n], bad, now)
			if w != nil && have[n] != nil && have[n].Live() {
				cp.Status.Reason = joinReasons(cp.Status.Reason, degraded(w, have))
			}
		}
		for _, a := range cp.Actions {
			if a.Kind == Wait && (r.Wake.IsZero() || a.Until.Before(r.Wake)) {
				r.Wake = a.Until
			}
		}
		r.Containers = append(r.Containers, cp)
	}
	return r
}

// planOne plans one container. bad are the invalid files that name it.
func (p Planner) planOne(name string, want *desired.Container, have *actual.Container, bad []*desired.FileStatus, now time.Time) *ContainerPlan {
	cp := &ContainerPlan{Status: Status{Name: name, Desired: want, Actual: have}}
	st := &cp.Status
	if want != nil {
		st.Source = want.Source
	}
	if have != nil {
		st.Restarts = have.Restarts
	}
	var kept string // "kept: web.yaml is invalid", or ""
	for _, f := range bad {
		st.Errors = append(st.Errors, f.Errors...)
	}
	if len(bad) > 0 {
		f := bad[0]
		for _, b := range bad {
			if want != nil && b.Path == want.Source {
				f = b
			}
		}
		if want == nil || f.Path == want.Source {
			kept = "kept: " + filepath.Base(f.Path) + " is invalid"
		} else {
			kept = filepath.Base(f.Path) + " is invalid"
		}
	}

	s := seq{name: name}
	switch {
	case want == nil && have == nil:
		// Named only by files that never validated.
		st.Phase = PhaseInvalid
		st.Reason = "invalid: " + filepath.Base(bad[0].Path) + " has errors"
		return cp

	case want != nil && want.Unresolved():
		p.planUnresolved(&s, st, want, have, now)

	case have == nil:
		st.Phase = PhasePending
		s.reason = "created: new manifest " + filepath.Base(want.Source)
		s.create(want, 0, 0)
		s.add(Action{Kind: Start})

	case want == nil:
		st.Phase = observedPhase(have)
		if len(bad) > 0 {
			// The loader should have kept the last good definition;
			// whatever happened, a bad file never removes anything.
			break
		}
		s.reason = "deleted: manifest removed"
		s.stopIfLive(have, have.Applied, now)
		s.add(Action{Kind: Delete, Forget: true})

	default:
		st.Phase = observedPhase(have)
		p.planExisting(&s, st, want, have, now)
	}

	cp.Actions = s.actions
	st.Reason = joinReasons(st.Reason, s.statusReason(), kept)
	return cp
}

// planUnresolved plans a wanted container whose image is not resolved
// yet (being pulled, or its pull failed): nothing is created from it, and
// a container already there goes on as it was created, so that a changed
// image never stops the old container before the new one is on disk. The
// resolver asks for the container to be planned again once it knows more.
func (p Planner) planUnresolved(s *seq, st *Status, want *desired.Container, have *actual.Container, now time.Time) {
	wait := want.ImageWait
	if wait == "" {
		wait = "image " + want.Image + " not resolved yet"
	}
	if have == nil {
		st.Phase = PhasePulling
		if want.ImageFailed {
			st.Phase = PhaseBackoff
		}
		st.Reason = wait
		return
	}
	st.Phase = observedPhase(have)
	if have.Applied == nil || have.Applied.Unresolved() {
		// What it runs is unknown: leave it as it is until the image
		// is there and it can be recreated.
		st.Reason = wait
		return
	}
	p.planExisting(s, st, have.Applied, have, now)
	// The old definition's reasons ("restarted: …") come first; the
	// image's state is what the operator is waiting for.
	st.Reason = joinReasons(st.Reason, wait)
}

// PausedRecheck is how often a paused container with a pending change is
// looked at again, to apply the change soon after it is resumed.
const PausedRecheck = time.Second

// planExisting plans a container that is both wanted and present.
func (p Planner) planExisting(s *seq, st *Status, want *desired.Container, have *actual.Container, now time.Time) {
	live := have.Live()
	changed := have.SpecHash != want.Hash
	inPlace := changed && have.BaseHash != "" && have.BaseHash == want.BaseHash

	switch {
	case have.Status == actual.StatusCreating || (have.Status == actual.StatusCreated && !have.InitAlive) ||
		(have.Status == actual.StatusStopped && have.Started.IsZero() && have.StopRequested.IsZero()):
		// Never started: a create cut short (the executor's monitor kills
		// an init whose creator died before it was created) or a created
		// container whose init was killed. It never ran, so redoing it is
		// not a restart and its policy does not apply.
		st.Phase = PhaseCreating
		s.reason = "recreated: left half-created"
		s.killLeftovers(have)
		s.add(Action{Kind: Delete})
		s.create(want, have.Restarts, have.Failures)
		s.add(Action{Kind: Start})

	case !have.StopRequested.IsZero():
		// A stop we asked for: whatever the exit, it is not the
		// container's doing; finish it and bring up what is wanted.
		if changed {
			s.reason = "recreated: " + p.changes(have.Applied, want) + " changed"
		} else {
			s.reason = "recreated: a stop was under way"
		}
		if live {
			st.Phase = PhaseStopping
			s.stopIfLive(have, defOr(have.Applied, want), now)
		} else {
			s.killLeftovers(have)
		}
		s.add(Action{Kind: Delete})
		if changed {
			s.create(want, 0, 0)
		} else {
			s.create(want, have.Restarts, have.Failures)
		}
		s.add(Action{Kind: Start})

	case changed && live && have.Paused:
		// Paused is the operator's decision: a change waits until the
		// container is resumed, then applies as usual. Resuming is done
		// behind the daemon's back (reconciled resume), so the container
		// is looked at again every PausedRecheck meanwhile. (Removing its
		// manifest still stops it: the daemon thaws it first.)
		s.reason = "paused: change pending"
		s.add(Action{Kind: Wait, Until: now.Add(PausedRecheck)})

	case changed && live && inPlace:
		s.reason = "updated in place: " + p.changes(have.Applied, want) + " changed"
		s.add(Action{Kind: Update, Desired: want})
		if have.Status == actual.StatusCreated {
			s.add(Action{Kind: Start, Reason: "started: created but never started"})
		}

	case changed && !inPlace:
		s.reason = "recreated: " + p.changes(have.Applied, want) + " changed"
		if have.SpecHash == "" {
			s.reason = "recreated: the definition it runs is unknown"
		}
		s.stopIfLive(have, defOr(have.Applied, want), now)
		s.add(Action{Kind: Delete})
		s.create(want, 0, 0)
		s.add(Action{Kind: Start})

	case healthRestart(want, have): // spec.health.onUnhealthy (order.go)
		s.restartUnhealthy(st, want, have, now)

	case live && have.Status == actual.StatusCreated:
		s.reason = "started: created but never started"
		s.add(Action{Kind: Start})

	case live:
		// Running as wanted: nothing to do.
		if have.Paused {
			st.Reason = "paused"
		}

	default:
		// Exited. A change of resources alone needs nothing of its own: a
		// restart creates the container from want.
		policy := want.Restart
		exit := exitWords(have)
		if !restartWanted(policy, have) {
			s.reason = "not restarted: " + exit + ", policy " + string(policyOrDefault(policy))
			s.killLeftovers(have)
			break
		}
		failures, next := Backoff(have)
		if now.Before(next) {
			st.Phase = PhaseBackoff
			st.NextTry = next
			s.reason = "backoff: next try in " + roundUp(next.Sub(now)).String()
			s.killLeftovers(have)
			s.add(Action{Kind: Wait, Until: next})
			break
		}
		s.reason = "restarted: " + exit + ", policy " + string(policyOrDefault(policy))
		s.killLeftovers(have)
		s.add(Action{Kind: Delete})
		s.create(want, have.Restarts+1, failures)
		s.add(Action{Kind: Start})
	}
}

// seq builds one container's action sequence. Actions added without a
// reason get the sequence's.
type seq struct {
	name    string
	reason  string
	actions []Action
}

func (s *seq) add(a Action) {
	a.Container = s.name
	if a.Reason == "" {
		a.Reason = s.reason
	}
	s.actions = append(s.actions, a)
}

func (s *seq) create(want *desired.Container, restarts, failures int) {
	s.add(Action{Kind: Create, Desired: want, Restarts: restarts, Failures: failures})
}

// stopIfLive stops a live container with def's stop signal and timeout; a
// stop already under way keeps its deadline.
func (s *seq) stopIfLive(have *actual.Container, def *desired.Container, now time.Time) {
	if !have.Live() {
		s.killLeftovers(have)
		return
	}
	sig, timeout := DefaultStopSignal, DefaultStopTimeout
	if def != nil {
		if def.StopSignal != "" {
			sig = def.StopSignal
		}
		if def.StopTimeout > 0 {
			timeout = def.StopTimeout
		}
	}
	if !have.StopRequested.IsZero() {
		timeout = have.StopRequested.Add(timeout).Sub(now)
		if timeout <= 0 {
			sig, timeout = "SIGKILL", 0
		}
	}
	s.add(Action{Kind: Stop, Signal: sig, Timeout: timeout})
}

// killLeftovers kills what a dead init left in the cgroup.
func (s *seq) killLeftovers(have *actual.Container) {
	if have.Live() || !have.CgroupHasProcs {
		return
	}
	s.add(Action{Kind: Stop, Signal: "SIGKILL", All: true,
		Reason: "stopped: init exited, killing the processes it left behind"})
}

// statusReason is the reason shown in the status: the sequence's.
func (s *seq) statusReason() string {
	if s.reason != "" {
		return s.reason
	}
	if len(s.actions) > 0 {
		return s.actions[0].Reason
	}
	return ""
}

// observedPhase is a present container's phase before anything is done.
func observedPhase(c *actual.Container) Phase {
	switch {
	case c.Status == actual.StatusCreating || (c.Status == actual.StatusCreated && !c.InitAlive):
		return PhaseCreating
	case c.Live() && !c.StopRequested.IsZero():
		return PhaseStopping
	case c.Live() && c.Status == actual.StatusCreated:
		return PhaseCreating
	case c.Live():
		return PhaseRunning
	default:
		return PhaseExited
	}
}

// changes names what changed between old and new: "spec.command" or
// "spec changed" when unknown.
func (p Planner) changes(old, new *desired.Container) string {
	var fields []string
	if old != nil && p.ChangedFields != nil {
		fields = p.ChangedFields(old, new)
	}
	switch n := len(fields); {
	case n == 0:
		return "spec"
	case n <= 3:
		return strings.Join(fields, ", ")
	default:
		return fmt.Sprintf("%s and %d more", strings.Join(fields[:3], ", "), n-3)
	}
}

func defOr(a, b *desired.Container) *desired.Container {
	if a != nil {
		return a
	}
	return b
}

func joinReasons(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}

// roundUp rounds d up to whole seconds (at least 1s), for "next try in 40s".
func roundUp(d time.Duration) time.Duration {
	r := d.Truncate(time.Second)
	if r < d || r == 0 {
		r += time.Second
	}
	return r
}
