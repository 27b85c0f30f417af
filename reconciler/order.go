package reconciler

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// DependencyRecheck is how often a container that waits for others (its
// spec.after, or dependents to be removed before it) is planned again. The
// daemon also asks for it when a container's health changes, so this is
// the bound, not the usual delay.
const DependencyRecheck = time.Second

// unmet says, for a container about to be created, which of its spec.after
// conditions are not met: "waiting for db: not healthy yet" (joined with
// "; " when several), or "" when all are.
func unmet(want *desired.Container, wantSet desired.Set, have actual.Set) string {
	var out []string
	for _, d := range want.After() {
		if why := conditionUnmet(d, wantSet.Containers[d.Name], have[d.Name]); why != "" {
			out = append(out, "waiting for "+d.Name+": "+why)
		}
	}
	return strings.Join(out, "; ")
}

// conditionUnmet says why dependency d is not met ("not healthy yet"), ""
// when it is. def and c are the dependency as wanted and as observed.
func conditionUnmet(d desired.Dependency, def *desired.Container, c *actual.Container) string {
	if def == nil && c == nil {
		return "not defined"
	}
	cond := d.Condition
	if cond == "" {
		cond = desired.ConditionStarted
	}
	if c != nil && conditionMet(cond, c) {
		return ""
	}
	if cond == desired.ConditionHealthy && c != nil && c.Live() && c.Status == actual.StatusRunning && desired.Probe(def, c.Applied) == nil {
		// An image's container without spec.health whose image has
		// no HEALTHCHECK (after.go lets it through: not known then).
		return "not healthy yet: it has no health check (its image has no HEALTHCHECK); give it spec.health"
	}
	return "not " + string(cond) + " yet"
}

// conditionMet says whether observed container c meets cond.
func conditionMet(cond desired.Condition, c *actual.Container) bool {
	switch cond {
	case desired.ConditionHealthy:
		return c.Live() && c.Health == actual.HealthHealthy
	case desired.ConditionReady:
		return c.Live() && c.Ready
	case desired.ConditionCompleted:
		return !c.Live() && c.Status == actual.StatusStopped && c.Exited && c.ExitCode == 0 && !c.OOMKilled
	default: // started
		return !c.Started.IsZero() && c.Status != actual.StatusCreating
	}
}

// degraded notes, for a container that runs, the healthy and ready
// conditions of its spec.after that no longer hold ("db: not healthy
// now"): its dependencies are not stopped or waited for again (as
// compose), but status shows it.
func degraded(want *desired.Container, have actual.Set) string {
	var out []string
	for _, d := range want.After() {
		if d.Condition != desired.ConditionHealthy && d.Condition != desired.ConditionReady {
			continue
		}
		if c := have[d.Name]; c == nil || !conditionMet(d.Condition, c) {
			out = append(out, d.Name+": not "+string(d.Condition)+" now")
		}
	}
	return strings.Join(out, "; ")
}

// removing returns the containers the plan removes (present, not wanted,
// not kept by an invalid file).
func removing(want desired.Set, have actual.Set, invalid []*desired.FileStatus) map[string]bool {
	out := map[string]bool{}
	for n, c := range have {
		if c == nil || want.Containers[n] != nil {
			continue
		}
		kept := false
		for _, f := range invalid {
			if slices.Contains(f.Containers, n) {
				kept = true
			}
		}
		if !kept {
			out[n] = true
		}
	}
	return out
}

// dependentsFirst returns, for container name being removed, the other
// containers being removed whose definition waits for it (they are
// removed first: reverse start order), sorted.
func dependentsFirst(name string, have actual.Set, gone map[string]bool) []string {
	var out []string
	for n := range gone {
		c := have[n]
		if n == name || c == nil || c.Applied == nil {
			continue
		}
		for _, d := range c.Applied.After() {
			if d.Name == name {
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

// healthRestart says whether a live container is to be restarted for its
// health: it runs (not paused: a frozen container fails its probes, and
// pausing is the operator's decision), its probe says unhealthy, and its
// wanted definition says onUnhealthy: restart.
func healthRestart(want *desired.Container, have *actual.Container) bool {
	h := desired.Probe(want, have.Applied)
	return h != nil && h.OnUnhealthy != desired.OnUnhealthyNone &&
		have.Live() && have.Status == actual.StatusRunning && !have.Paused && have.Health == actual.HealthUnhealthy
}

// related adds to one and have what planning container name needs besides
// itself: the containers its spec.after names, and, when it is being
// removed, the removed containers that wait for it. The loop uses it to
// plan one container from its own observation and theirs alone.
func (l *Loop) related(ctx context.Context, o OneObserver, name string, want desired.Set, one desired.Set, have actual.Set) error {
	w := want.Containers[name]
	if w != nil {
		for _, d := range w.After() {
			if _, ok := have[d.Name]; ok {
				continue
			}
			c, err := o.ObserveOne(ctx, d.Name)
			if err != nil {
				return fmt.Errorf("unable to observe container %s: %w", d.Name, err)
			}
			if c != nil {
				have[d.Name] = c
			}
			if dw := want.Containers[d.Name]; dw != nil {
				one.Containers[d.Name] = dw
			}
		}
		return nil
	}
	if have[name] == nil || (l.looked.Load() && !l.afterSeen.Load()) {
		return nil
	}
	all, err := l.cfg.Observer.Observe(ctx)
	if err != nil {
		return fmt.Errorf("unable to observe containers: %w", err)
	}
	for n, c := range all {
		if n == name || c == nil || c.Applied == nil || want.Containers[n] != nil {
			continue
		}
		for _, d := range c.Applied.After() {
			if d.Name == name {
				have[n] = c
			}
		}
	}
	return nil
}

// holdForOrder returns the plan of a container that the start order holds
// back, nil when it does not: a container to be created whose spec.after
// is not met stays pending ("waiting for db: not healthy yet"), and a
// container to be removed waits until the removed containers that wait for
// it are gone. Both are planned again after DependencyRecheck (and sooner
// when the daemon reports a change of health).
func holdForOrder(name string, w *desired.Container, want desired.Set, have actual.Set, gone map[string]bool, now time.Time) *ContainerPlan {
	h := have[name]
	var reason string
	switch {
	case w != nil && h == nil && !w.Unresolved():
		reason = unmet(w, want, have)
	case w == nil && gone[name]:
		if deps := dependentsFirst(name, have, gone); len(deps) > 0 {
			reason = "deleted: waiting for " + strings.Join(deps, ", ") + " to be removed first"
		}
	}
	if reason == "" {
		return nil
	}
	cp := &ContainerPlan{Status: Status{Name: name, Phase: PhasePending, Reason: reason, Desired: w, Actual: h}}
	if w != nil {
		cp.Status.Source = w.Source
	}
	if h != nil {
		cp.Status.Phase = observedPhase(h)
		cp.Status.Restarts = h.Restarts
	}
	cp.Actions = []Action{{Kind: Wait, Container: name, Reason: reason, Until: now.Add(DependencyRecheck)}}
	return cp
}

// restartUnhealthy stops a container its probe found unhealthy and
// creates it again: a restart like one after an exit, counted in restarts
// and as a short run for the crash-loop backoff unless it ran for
// BackoffReset. The backoff spaces these restarts too: a run is restarted
// for its health no sooner than NextDelay(failures) after it started (1s,
// 2s, 4s, ... 5m), and until then it runs on, unhealthy.
func (s *seq) restartUnhealthy(st *Status, want *desired.Container, have *actual.Container, now time.Time) {
	failures := have.Failures + 1
	if !have.Started.IsZero() && now.Sub(have.Started) >= BackoffReset {
		failures = 1
	}
	if next := have.Started.Add(NextDelay(failures)); !have.Started.IsZero() && now.Before(next) {
		st.NextTry = next
		s.reason = "backoff: unhealthy, restarted in " + roundUp(next.Sub(now)).String()
		s.add(Action{Kind: Wait, Until: next})
		return
	}
	s.reason = "restarted: unhealthy"
	s.stopIfLive(have, want, now)
	s.add(Action{Kind: Delete})
	s.create(want, have.Restarts+1, failures)
	s.add(Action{Kind: Start})
}
