package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/cgroups"
)

// StatusPaused is what PausedStatus says of a running container whose
// cgroup is frozen. ReadState never returns it: to the rest of the runtime
// (and to the reconciler) a paused container is running.
const StatusPaused Status = "paused"

// Pause freezes every process of running container id (the cgroup
// freezer: v1 freezer.state, v2 cgroup.freeze, or the systemd driver's
// freeze). The kernel's freezer state is the only record: IsPaused reads it.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	m, err := r.liveCgroup(ctx, id, "pause")
	if err != nil {
		return err
	}
	if err := m.Freeze(ctx, true); err != nil {
		return fmt.Errorf("pause container %s: %w", id, err)
	}
	return nil
}

// Resume thaws a paused container.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	m, err := r.liveCgroup(ctx, id, "resume")
	if err != nil {
		return err
	}
	if err := m.Freeze(ctx, false); err != nil {
		return fmt.Errorf("resume container %s: %w", id, err)
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
func IsPaused(st *State) bool {
	if p, ok := st.CgroupPaths["freezer"]; ok {
		if data, err := os.ReadFile(filepath.Join(p, "freezer.state")); err == nil {
			s := strings.TrimSpace(string(data))
			return s == "FROZEN" || s == "FREEZING"
		}
	}
	if p, ok := st.CgroupPaths[""]; ok {
		if data, err := os.ReadFile(filepath.Join(p, "cgroup.freeze")); err == nil {
			return strings.TrimSpace(string(data)) == "1"
		}
	}
	return false
}

// PausedStatus is st.Status, except StatusPaused for a running container
// whose cgroup is frozen: what `state` and `list` show.
func PausedStatus(st *State) Status {
	if st.Status == StatusRunning && IsPaused(st) {
		return StatusPaused
	}
	return st.Status
}

// KillAll sends sig to every process in container id's cgroup, like runc
// kill --all: the cgroup is frozen while the PIDs are listed and
// signalled, so that nothing forks past it, then thawed. A container that
// was paused stays paused, unless sig is SIGKILL (a frozen process would
// not die until thawed). Processes that exited meanwhile are no error.
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
	wasPaused := IsPaused(st)
	var errs []error
	frozen := false
	if !wasPaused {
		if err := m.Freeze(ctx, true); err == nil {
			frozen = true
		} else if !errors.Is(err, cgroups.ErrNotExist) {
			// No freezer: signal anyway, racing forks.
			r.log.Debug("kill --all without freezing", "container", id, "err", err)
		}
	}
	pids, err := m.Procs(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("list processes: %w", err))
	}
	if len(pids) == 0 && err == nil && st.Status == StatusStopped {
		errs = append(errs, &StateTransitionError{ID: id, Op: "kill", From: st.Status})
	}
	for _, p := range pids {
		if err := unix.Kill(p, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("signal process %d: %w", p, err))
		}
	}
	if frozen || (wasPaused && sig == unix.SIGKILL) {
		if err := m.Freeze(ctx, false); err != nil && !errors.Is(err, cgroups.ErrNotExist) {
			errs = append(errs, fmt.Errorf("thaw: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kill container %s: %w", id, err)
	}
	return nil
}
