package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/proc"
)

// StatusPaused is what PausedStatus says of a running container whose
// cgroup is frozen. ReadState never returns it: to the rest of the runtime
// (and to the reconciler) a paused container is running.
const StatusPaused Status = "paused"

// Pause freezes every process of running container id (the cgroup
// freezer: v1 freezer.state, v2 cgroup.freeze, or the systemd driver's
// freeze). The kernel's freezer state is the only record: IsPaused reads it.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	return r.freeze(ctx, id, "pause", true)
}

// Resume thaws a paused container.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	return r.freeze(ctx, id, "resume", false)
}

// freeze freezes (pause) or thaws (resume) container id's cgroup.
func (r *Runtime) freeze(ctx context.Context, id, op string, frozen bool) error {
	m, err := r.liveCgroup(ctx, id, op)
	if err != nil {
		return err
	}
	if err := m.Freeze(ctx, frozen); err != nil {
		return fmt.Errorf("%s container %s: %w", op, id, err)
	}
	return nil
}

// liveCgroup returns the cgroup of a created or running container.
func (r *Runtime) liveCgroup(ctx context.Context, id, op string) (cgroups.Manager, error) {
	st, err := ReadState(r.root, id)
	if err != nil {
		return nil, err
	}
	if st.Status != StatusRunning && st.Status != StatusCreated {
		return nil, &StateTransitionError{ID: id, Op: op, From: st.Status}
	}
	m, err := r.cgroupOf(st)
	if err != nil {
		return nil, fmt.Errorf("%s container %s: %w", op, id, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%s container %s: it has no cgroup", op, id)
	}
	return m, nil
}

// IsPaused reports whether st's cgroup is frozen (or freezing): v1
// freezer.state, else cgroup.freeze of the unified hierarchy. It reads the
// kernel, not a record, so it is right whoever froze the cgroup.
func IsPaused(st *State) bool { return frozen(st.CgroupPaths) }

// PausedStatus is st.Status, except StatusPaused for a running container
// whose cgroup is frozen: what `state` and `list` show.
func PausedStatus(st *State) Status {
	if st.Status == StatusRunning && IsPaused(st) {
		return StatusPaused
	}
	return st.Status
}

// KillAll sends sig to every process in container id's cgroup, like runc
// kill --all (see KillCgroup). A stopped container whose cgroup is empty
// is an error wrapping ErrNotRunning.
func (r *Runtime) KillAll(ctx context.Context, id string, sig unix.Signal) error {
	st, err := ReadState(r.root, id)
	if err != nil {
		return err
	}
	m, err := r.cgroupOf(st)
	if err != nil {
		return fmt.Errorf("kill container %s: %w", id, err)
	}
	if m == nil {
		if st.Status == StatusStopped {
			return &StateTransitionError{ID: id, Op: "kill", From: st.Status}
		}
		return fmt.Errorf("kill container %s: it has no cgroup to find its processes in", id)
	}
	n, err := KillContainer(ctx, st, m, sig, r.log)
	if err == nil && n == 0 && st.Status == StatusStopped {
		err = &StateTransitionError{ID: id, Op: "kill", From: st.Status}
	}
	if err != nil {
		return fmt.Errorf("kill container %s: %w", id, err)
	}
	return nil
}

// KillContainer sends sig to every process of container st, whose cgroup
// is m (nil: none), and returns how many it signalled. With SIGKILL an
// init that still runs is killed first (killInit): where it is the first
// process of a PID namespace of its own, the kernel kills the rest of the
// namespace with it, and KillCgroup then finds the cgroup empty and
// freezes nothing. Anything else goes through KillCgroup.
func KillContainer(ctx context.Context, st *State, m cgroups.Manager, sig unix.Signal, log *slog.Logger) (int, error) {
	n := 0
	var errs []error
	live := st.Status == StatusCreating || st.Status == StatusCreated || st.Status == StatusRunning
	if sig == unix.SIGKILL && live && (m == nil || !frozen(m.Paths())) {
		signalled, err := killInit(ctx, st.Pid, st.PidStartTime)
		if err != nil {
			errs = append(errs, err)
		}
		if signalled {
			n++
		}
	}
	if m != nil {
		k, err := KillCgroup(ctx, m, sig, log)
		n += k
		if err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// initExitWait bounds killInit's wait for a namespace's init to exit.
const initExitWait = 2 * time.Second

// killInit sends SIGKILL to the init (pid, start) and reports whether it
// did (false: it had exited). Where the init is the first process of a
// PID namespace of its own it then waits, up to initExitWait, for its
// exit: the kernel kills every other process of the namespace (and of
// those below it) and reaps them before the init's exit completes, and no
// process leaves a PID namespace. What a container started is then gone
// without its cgroup being frozen: on a cgroup v1 host a freeze and a thaw
// cost about 1.1 ms each on a 2-core VM, most of a container's stop,
// because the first freeze turns the kernel's freezer_active static key
// on and the last thaw off, and both patch the kernel's text.
func killInit(ctx context.Context, pid int, start uint64) (bool, error) {
	fd, err := openPidfd(pid, start)
	if errors.Is(err, errGone) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	// Should the init exit right before this read and its PID be reused,
	// the answer is another process's: then either the wait below ends at
	// once (the pidfd's process has exited) or KillCgroup does the work.
	nsInit, nsErr := proc.NamespaceInit(pid)
	if err := signalPidfd(fd, unix.SIGKILL); err != nil {
		if errors.Is(err, errGone) {
			return false, nil
		}
		return false, fmt.Errorf("kill the container's init %d: %w", pid, err)
	}
	if nsErr != nil || !nsInit {
		return true, nil
	}
	wctx, cancel := context.WithTimeout(ctx, initExitWait)
	defer cancel()
	// A timeout (a process of the namespace stuck in the kernel) leaves
	// the rest to KillCgroup.
	waitFds(wctx, fd)
	return true, nil
}

// KillCgroup sends sig to every process in m's cgroup and returns how
// many it signalled: the cgroup is frozen while the PIDs are listed and
// signalled, so that nothing forks past it, then thawed (as runc's
// signalAllProcesses does). A cgroup that was frozen stays frozen, unless
// sig is SIGKILL (a frozen process would not die until thawed). Processes
// that exited meanwhile, and a cgroup that does not exist, are no error.
// It is the one way reconciled kills every process of a container.
func KillCgroup(ctx context.Context, m cgroups.Manager, sig unix.Signal, log *slog.Logger) (int, error) {
	wasFrozen := frozen(m.Paths())
	if !wasFrozen {
		// Nothing in it (a stopped container's, most often): nothing to
		// freeze, kill and thaw. A process in no cgroup of it cannot fork
		// into it.
		pids, err := m.Procs(ctx)
		if errors.Is(err, cgroups.ErrNotExist) || (err == nil && len(pids) == 0) {
			return 0, nil
		}
	}
	var errs []error
	thaw := false
	if !wasFrozen {
		if err := m.Freeze(ctx, true); err == nil {
			thaw = true
		} else if errors.Is(err, cgroups.ErrNotExist) {
			return 0, nil
		} else if log != nil {
			// No freezer: signal anyway, racing forks.
			log.Debug("killing every process of a cgroup without freezing it", "cgroup", cgroupName(m), "err", err)
		}
	}
	pids, err := m.Procs(ctx)
	if err != nil && !errors.Is(err, cgroups.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list processes: %w", err))
	}
	for _, p := range pids {
		if err := unix.Kill(p, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("signal process %d: %w", p, err))
		}
	}
	if thaw || (wasFrozen && sig == unix.SIGKILL) {
		if err := m.Freeze(ctx, false); err != nil && !errors.Is(err, cgroups.ErrNotExist) {
			errs = append(errs, fmt.Errorf("thaw: %w", err))
		}
	}
	return len(pids), errors.Join(errs...)
}

// StopCgroup kills every process in m's cgroup (KillCgroup with SIGKILL),
// waits until it is empty (until ctx ends, 5 s without a deadline) and
// removes it. A cgroup that does not exist is no error.
func StopCgroup(ctx context.Context, m cgroups.Manager, log *slog.Logger) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		n, err := KillCgroup(ctx, m, unix.SIGKILL, log)
		if err != nil {
			return fmt.Errorf("unable to kill the processes of cgroup %s: %w", cgroupName(m), err)
		}
		if n == 0 {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			pids, _ := m.Procs(ctx)
			return fmt.Errorf("cgroup %s still holds processes %v: %w", cgroupName(m), pids, context.Cause(ctx))
		case <-t.C:
		}
	}
	if err := m.Destroy(ctx); err != nil && !errors.Is(err, cgroups.ErrNotExist) {
		return fmt.Errorf("unable to remove cgroup %s: %w", cgroupName(m), err)
	}
	return nil
}
