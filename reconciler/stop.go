package reconciler

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/internal/sys"
)

// stop sends the stop signal, waits up to the timeout, then SIGKILLs every
// process in the cgroup and waits for the init to go.
func (l *Loop) stop(ctx context.Context, a Action, rec actual.Record) error {
	name, ex := a.Container, l.cfg.Executor
	sig, err := parseSignal(a.Signal)
	if err != nil {
		return err
	}
	if a.All {
		return wrap(ex.Kill(ctx, name, sig, true), "kill the processes of", name)
	}
	if rec.StopRequested.IsZero() {
		rec.StopRequested = l.cfg.Clock.Now()
		// Act, then record: a stop never waits on a successful write (a
		// full disk must not keep a removed container running). Without
		// the record, a restarted daemon only counts the timeout afresh.
		if err := l.cfg.Recorder.Record(ctx, name, rec); err != nil {
			l.log.Warn("unable to record the stop; stopping anyway", "container", name, "err", err)
		}
	}
	killErr := ex.Kill(ctx, name, sig, sig == unix.SIGKILL)
	if sig != unix.SIGKILL {
		wctx, cancel := context.WithTimeout(ctx, a.Timeout)
		err := ex.Wait(wctx, name)
		cancel()
		if err == nil {
			return nil // the kill error, if any, was about a process already gone
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		l.log.Info("stop timed out, killing", "container", name, "signal", a.Signal, "timeout", a.Timeout)
		l.emit(Event{Container: name, Kind: EventStopTimedOut, Action: Stop, Signal: a.Signal, Timeout: a.Timeout})
		killErr = ex.Kill(ctx, name, unix.SIGKILL, true)
	}
	if err := ex.Wait(ctx, name); err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return errors.Join(wrap(killErr, "kill", name),
			fmt.Errorf("container %s did not exit: %w", name, err))
	}
	return nil
}

// parseSignal reads a stop signal with sys.ParseSignal, the parser that
// validated it in the manifest ("SIGTERM", "TERM", "15", "SIGRTMIN+3"); a
// signal it does not know is terminal: another try would not know it either.
func parseSignal(s string) (syscall.Signal, error) {
	sig, err := sys.ParseSignal(s)
	if err != nil {
		return 0, fmt.Errorf("stop signal: %w: %w", err, ErrTerminal)
	}
	return sig, nil
}
