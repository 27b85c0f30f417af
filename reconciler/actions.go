package reconciler

import (
	"context"
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/actual"
)

// process plans container name afresh and runs its sequence. A failed
// action ends the sequence; the container is retried after its rate
// limiter's delay, and the next try re-plans from what is then there.
func (l *Loop) process(ctx context.Context, name string) {
	log := l.log.With("container", name)
	if inv, ok := l.cfg.Observer.(Invalidator); ok {
		inv.Invalidate(name)
	}
	cp, have, err := l.planOne(ctx, name)
	if err != nil {
		log.Error("unable to plan", "err", err)
		l.queue.AddRateLimited(name)
		return
	}
	if cp == nil {
		l.mu.Lock()
		_, had := l.status[name]
		delete(l.status, name)
		l.mu.Unlock()
		if had {
			l.cfg.OnStatus()
		}
		l.queue.Forget(name)
		return
	}
	st := cp.Status
	l.setStatus(st)
	if len(cp.Actions) == 0 {
		l.queue.Forget(name)
		return
	}
	begin := func(a Action) {
		st.Phase, st.Reason = a.Phase(), a.Reason
		l.setStatus(st)
		log.Info(string(a.Kind), "reason", a.Reason)
		l.emit(Event{Container: name, Kind: EventBegin, Action: a.Kind, Reason: a.Reason})
	}
	for i := 0; i < len(cp.Actions); i++ {
		a := cp.Actions[i]
		if a.Kind == Wait {
			l.queue.Forget(name)
			l.queue.AddAfter(name, a.Until.Sub(l.cfg.Clock.Now()))
			return
		}
		begin(a)
		var err error
		cs, ok := l.cfg.Executor.(CreateStarter)
		if ok && a.Kind == Create && i+1 < len(cp.Actions) && cp.Actions[i+1].Kind == Start {
			// Both in one call; the start's status, log line and event
			// follow the create's once it is known to have succeeded.
			var created bool
			created, err = l.createStart(ctx, a, cs)
			if created {
				i++
				a = cp.Actions[i]
				begin(a)
			}
		} else {
			err = l.do(ctx, a, have)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st.Reason = fmt.Sprintf("failed to %s: %v", a.Kind, err)
			terminal := errors.Is(err, ErrTerminal)
			l.emit(Event{Container: name, Kind: EventFailed, Action: a.Kind, Err: err, Terminal: terminal})
			if terminal {
				log.Error("action failed, not retried", "action", a.Kind, "err", err)
				l.queue.Forget(name)
			} else {
				log.Error("action failed, will retry", "action", a.Kind, "err", err)
				l.queue.AddRateLimited(name)
			}
			l.setStatus(st)
			return
		}
	}
	// Look again once the actions have had their effect; a container that
	// keeps needing actions is looked at less and less often.
	l.queue.AddRateLimited(name)
}

// do runs one action. have is the container as observed before the
// sequence (nil when absent).
func (l *Loop) do(ctx context.Context, a Action, have *actual.Container) error {
	name := a.Container
	timeout := l.cfg.ActionTimeout
	if a.Kind == Stop {
		timeout += a.Timeout
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("%s of container %s took longer than %s", a.Kind, name, timeout))
	defer cancel()
	var rec actual.Record
	if have != nil {
		rec = have.Record
	}
	ex := l.cfg.Executor
	switch a.Kind {
	case Create:
		if err := l.recordAhead(ctx, a); err != nil {
			return err
		}
		return wrap(ex.Create(ctx, name, a.Desired.Spec), "create", name)
	case Start:
		return wrap(ex.Start(ctx, name), "start", name)
	case Stop:
		return l.stop(ctx, a, rec)
	case Delete:
		if err := ex.Delete(ctx, name); err != nil {
			return wrap(err, "delete", name)
		}
		if a.Forget {
			return wrap(l.cfg.Recorder.Forget(ctx, name), "forget the record of", name)
		}
		return nil
	case Update:
		var r *specs.LinuxResources
		if a.Desired != nil && a.Desired.Spec != nil && a.Desired.Spec.Linux != nil {
			r = a.Desired.Spec.Linux.Resources
		}
		if r == nil {
			r = &specs.LinuxResources{}
		}
		if err := ex.Update(ctx, name, r); err != nil {
			return wrap(err, "update", name)
		}
		rec.Applied = a.Desired
		return wrap(l.cfg.Recorder.Record(ctx, name, rec), "record", name)
	}
	return fmt.Errorf("unknown action %q: %w", a.Kind, ErrTerminal)
}

// createStart runs create action a and the start that follows it in one
// call to cs, under one timeout for both. created reports whether the
// create succeeded (an error then is the start's).
func (l *Loop) createStart(ctx context.Context, a Action, cs CreateStarter) (created bool, err error) {
	name := a.Container
	timeout := 2 * l.cfg.ActionTimeout
	ctx, cancel := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("create and start of container %s took longer than %s", name, timeout))
	defer cancel()
	if err := l.recordAhead(ctx, a); err != nil {
		return false, err
	}
	created, err = cs.CreateStart(ctx, name, a.Desired.Spec)
	if created {
		return true, wrap(err, "start", name)
	}
	return false, wrap(err, "create", name)
}

// recordAhead checks create action a and writes the container's record
// before it is created. Write-ahead: a record without a container is
// ignored; a container without its record would be recreated.
func (l *Loop) recordAhead(ctx context.Context, a Action) error {
	name := a.Container
	if a.Desired == nil || a.Desired.Spec == nil {
		return fmt.Errorf("create %s without a spec: %w", name, ErrTerminal)
	}
	if a.Desired.Unresolved() {
		return fmt.Errorf("create %s before its image %s is resolved: %w", name, a.Desired.Image, ErrTerminal)
	}
	if err := l.cfg.Recorder.Record(ctx, name, actual.Record{
		Applied: a.Desired, Restarts: a.Restarts, Failures: a.Failures,
	}); err != nil {
		return fmt.Errorf("unable to record container %s: %w", name, err)
	}
	return nil
}

func wrap(err error, what, name string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("unable to %s container %s: %w", what, name, err)
}
