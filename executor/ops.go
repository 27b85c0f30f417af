package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/sys"
)

// State returns container id's current state.
func (r *Runtime) State(ctx context.Context, id string) (*State, error) {
	return ReadState(r.root, id)
}

// List returns the state of every container.
func (r *Runtime) List(ctx context.Context) ([]*State, error) {
	return List(r.root)
}

// Start releases a created container's process: it opens the exec fifo,
// which the waiting init is blocked on, and reads the outcome (nothing if
// the init exec'd the user process, else why it failed). A container
// whose init already exec'd (a start cut short after the exec, see
// RecoverStart) is recorded running without waiting on the fifo.
func (r *Runtime) Start(ctx context.Context, id string) error {
	_, _, err := r.StartState(ctx, id)
	return err
}

// StartState is Start that also returns the state it recorded (the one
// State would read next) and whether it only recorded a start that had
// already happened (see RecoverStart). The daemon uses it to watch the
// started process without reading the state again.
func (r *Runtime) StartState(ctx context.Context, id string) (st *State, recovered bool, err error) {
	defer r.refillAfterStart() // the spares a create took (refillLater)
	st, err = ReadState(r.root, id)
	if err != nil {
		return nil, false, err
	}
	if st.Status != StatusCreated {
		return nil, false, &StateTransitionError{ID: id, Op: "start", From: st.Status}
	}
	pidfd, err := openPidfd(st.Pid, st.PidStartTime)
	if err != nil {
		return nil, false, fmt.Errorf("start container %s: %w", id, ErrNotRunning)
	}
	defer unix.Close(pidfd)
	// The init cannot exec before someone opens the fifo: if it runs
	// another binary than its monitor now, an earlier start got that far
	// and died before recording it.
	if initExecd(st) {
		if err := r.recordStarted(ctx, id, st, true); err != nil {
			return nil, false, err
		}
		return st, true, nil
	}
	if err := r.startCreated(ctx, id, st, pidfd, -1, time.Time{}); err != nil {
		return nil, false, err
	}
	return st, false, nil
}

// startCreated releases the init of created container id, whose state is
// st and whose init pidfd is a pidfd of, waits for its exec and records
// it (in st). A failed exec removes the container. fifo is the exec fifo
// when it was opened already (at started), else -1; it is closed here.
func (r *Runtime) startCreated(ctx context.Context, id string, st *State, pidfd, fifo int, started time.Time) error {
	if fifo < 0 {
		// Started is taken before the init is released, so that it is
		// never later than the Finished the monitor records.
		started = time.Now().UTC()
		var err error
		fifo, err = unix.Open(filepath.Join(StateDir(r.root, id), fifoFile), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("start container %s: open exec fifo: %w", id, err)
		}
	}
	defer unix.Close(fifo)
	msg, err := readFifo(ctx, fifo, pidfd)
	if err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	if msg != "" {
		if n, ok := strings.CutPrefix(msg, waiter.ExecFailedPrefix); ok {
			if errno, err := strconv.Atoi(n); err == nil {
				msg = "exec of the container's process: " + unix.Errno(errno).Error()
			}
		}
		err := fmt.Errorf("start container %s: %s", id, msg)
		if derr := r.Delete(context.WithoutCancel(ctx), id, true); derr != nil {
			err = errors.Join(err, derr)
		}
		return err
	}
	st.Started = started
	return r.recordStarted(ctx, id, st, false)
}

// recordStarted removes the exec fifo, records st running and runs the
// poststart hooks (only for a start that happened here: a recovered one
// ran them already or died before); a failing one is logged and the rest
// still run, as the runtime-spec asks.
func (r *Runtime) recordStarted(ctx context.Context, id string, st *State, recovered bool) error {
	dir := StateDir(r.root, id)
	if err := os.Remove(filepath.Join(dir, fifoFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.log.Warn("remove exec fifo", "container", id, "err", err)
	}
	st.Status = StatusRunning
	if st.Started.IsZero() {
		st.Started = time.Now().UTC()
	}
	if err := writeJSONAtomic(dir, stateFile, stripComputed(st)); err != nil {
		return fmt.Errorf("start container %s: write state: %w", id, err)
	}
	if !recovered && st.Hooks != nil && len(st.Hooks.Poststart) > 0 {
		if err := runAllHooks(ctx, "poststart", st.Hooks.Poststart, ociState(st)); err != nil {
			r.log.Warn("poststart hook failed", "container", id, "err", err)
		}
	}
	return nil
}

// readFifo waits for the init to connect to the exec fifo and returns what
// it wrote before closing it. An init that dies without connecting is an
// error.
func readFifo(ctx context.Context, fifo, pidfd int) (string, error) {
	var msg []byte
	buf := make([]byte, 4096)
	connected := false
	for {
		i, err := waitFds(ctx, fifo, pidfd)
		if err != nil {
			return "", err
		}
		if i == 1 && !connected {
			// The init is gone; did it still write something?
			if n, _ := unix.Read(fifo, buf); n > 0 {
				return string(buf[:n]), nil
			}
			return "", fmt.Errorf("container process exited before start: %w", ErrNotRunning)
		}
		for {
			n, err := unix.Read(fifo, buf)
			if n > 0 {
				connected = true
				msg = append(msg, buf[:n]...)
				continue
			}
			if n == 0 && err == nil {
				return string(msg), nil // writer closed: exec'd or failed
			}
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				connected = true
				break
			}
			return "", os.NewSyscallError("read exec fifo", err)
		}
		if i == 1 {
			return string(msg), nil
		}
	}
}

// Kill sends sig to the container's init. A created container can be
// signalled too (as runc allows).
func (r *Runtime) Kill(ctx context.Context, id string, sig unix.Signal) error {
	st, err := ReadState(r.root, id)
	if err != nil {
		return err
	}
	if st.Status != StatusCreated && st.Status != StatusRunning {
		return &StateTransitionError{ID: id, Op: "kill", From: st.Status}
	}
	fd, err := openPidfd(st.Pid, st.PidStartTime)
	if err != nil {
		if errors.Is(err, errGone) {
			return fmt.Errorf("kill container %s: %w", id, ErrNotRunning)
		}
		return err
	}
	defer unix.Close(fd)
	if err := signalPidfd(fd, sig); err != nil {
		if errors.Is(err, errGone) {
			return fmt.Errorf("kill container %s: %w", id, ErrNotRunning)
		}
		return fmt.Errorf("kill container %s: %w", id, err)
	}
	return nil
}

// Wait blocks until container id has stopped and its monitor has recorded
// the exit, and returns the final state.
func (r *Runtime) Wait(ctx context.Context, id string) (*State, error) {
	st, err := ReadState(r.root, id)
	if err != nil {
		return nil, err
	}
	pid, start := st.waited()
	if st.Exited || pid == 0 {
		return st, nil
	}
	if err := waitProcess(ctx, pid, start); err != nil {
		return nil, err
	}
	return ReadState(r.root, id)
}

// Delete removes container id: its processes (only with force if it is
// running; a created container is always killed), its cgroup and its
// state. Mounts live in the container's mount namespace and go with its
// last process. Poststop hooks run last, every one of them: their
// failures are logged.
//
// With force, a container whose state is unreadable (ErrBadState) is
// removed too: see deleteUnreadable.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	st, err := ReadState(r.root, id)
	if err != nil {
		if force && errors.Is(err, ErrBadState) {
			return r.deleteUnreadable(ctx, id, err)
		}
		return err
	}
	if (st.Status == StatusRunning || st.Status == StatusCreating) && !force {
		return &StateTransitionError{ID: id, Op: "delete", From: st.Status}
	}
	var errs []error
	mgr, err := r.cgroupOf(st)
	if err != nil {
		errs = append(errs, err)
	}
	// A creating container's init is killed too: its creator died (or is
	// being overruled by force). The one kill-all (KillContainer): the
	// init, then what is left in the cgroup, frozen while listed and
	// killed (a paused task acts on SIGKILL only once thawed).
	if _, err := KillContainer(ctx, st, mgr, unix.SIGKILL, r.log); err != nil {
		errs = append(errs, err)
	}
	if pid, start := st.waited(); pid > 0 {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := waitProcess(wctx, pid, start)
		cancel()
		if err != nil {
			what := "monitor"
			if st.CallerReaps {
				what = "the container's process"
			}
			errs = append(errs, fmt.Errorf("wait for %s: %w", what, err))
		}
	}
	if mgr != nil {
		if err := mgr.Destroy(ctx); err != nil {
			errs = append(errs, fmt.Errorf("unable to remove cgroup: %w", err))
		}
	}
	// The cgroup is the ground truth for what runs for id: where this
	// runtime puts id's cgroup, nothing is left either (a state that
	// names another cgroup was forged or is stale).
	if own := r.defaultCgroupsPath(id); own != "" && own != st.CgroupPath {
		if err := r.stopCgroupAt(ctx, id, own, mgr); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	if msg, err := os.ReadFile(filepath.Join(StateDir(r.root, id), monitorErrFile)); err == nil {
		r.log.Warn("the container's monitor held a Go runtime for the container's life", "container", id, "err", strings.TrimSpace(string(msg)))
	}
	if err := os.RemoveAll(StateDir(r.root, id)); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	if st.Hooks != nil && len(st.Hooks.Poststop) > 0 {
		st.Status = StatusStopped
		if err := runAllHooks(ctx, "poststop", st.Hooks.Poststop, ociState(st)); err != nil {
			r.log.Warn("poststop hook failed", "container", id, "err", err)
		}
	}
	return nil
}

// frozen reports whether the cgroup at paths is frozen or freezing: the
// v1 freezer's state, else cgroup.freeze of the unified hierarchy.
// Unknown (no such file) reads as not frozen.
func frozen(paths map[string]string) bool {
	if p, ok := paths["freezer"]; ok {
		if s, err := sys.ReadFile(filepath.Join(p, "freezer.state")); err == nil {
			return !bytes.HasPrefix(s, []byte("THAWED"))
		}
	}
	if p, ok := paths[""]; ok {
		s, err := sys.ReadFile(filepath.Join(p, "cgroup.freeze"))
		return err == nil && bytes.HasPrefix(s, []byte("1"))
	}
	return false
}

func (r *Runtime) cgroupOf(st *State) (cgroups.Manager, error) {
	if st.CgroupDriver == "" {
		return nil, nil
	}
	d, err := r.cgroupDriver()
	if err != nil || d == nil || d.Name() != st.CgroupDriver {
		newDriver, ok := cgroupDriverByName[st.CgroupDriver]
		if !ok {
			return nil, fmt.Errorf("container %s uses cgroup driver %q, which this runtime does not have", st.ID, st.CgroupDriver)
		}
		var err error
		if d, err = newDriver(); err != nil {
			return nil, err
		}
	}
	m, err := d.Manager(st.ID, st.CgroupPath)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// stripComputed returns st as stored: the status computed by ReadState is
// kept, exit fields (which live in exit.json) are not.
func stripComputed(st *State) *State {
	c := *st
	c.Exited, c.ExitCode, c.ExitSignal, c.OOMKilled, c.Finished = false, 0, "", false, time.Time{}
	return &c
}

// deleteUnreadable removes container id whose state cannot be parsed
// (why): what runs for it is found through its cgroup, the ground truth,
// where this runtime puts it (WithCgroupsPath, else the driver's
// default): every process there is killed (its init's death ends its
// monitor) and the cgroup removed; then the state directory goes. Its
// poststop hooks, recorded in the unreadable state, do not run.
func (r *Runtime) deleteUnreadable(ctx context.Context, id string, why error) error {
	r.log.Warn("container state is unreadable: stopping what runs in its cgroup and removing it", "container", id, "err", why)
	if err := r.stopCgroupAt(ctx, id, r.defaultCgroupsPath(id), nil); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	if err := removeWhileMonitorExits(ctx, StateDir(r.root, id)); err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// removeWhileMonitorExits removes a state directory whose container was
// just killed without knowing its monitor (the state that names it is
// unreadable): the monitor records the init's exit there as it ends (the
// reaper's exit file, through the directory's descriptor), and a file it
// creates while RemoveAll empties the directory fails the final rmdir
// with ENOTEMPTY (CI saw it). Once the directory is gone the monitor can
// create nothing in it, so RemoveAll is tried again for up to 2 s.
func removeWhileMonitorExits(ctx context.Context, dir string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := os.RemoveAll(dir)
		if err == nil || !errors.Is(err, unix.ENOTEMPTY) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stopCgroupAt stops (StopCgroup) the cgroup of id at path, if the
// runtime has a cgroup driver and it is not done's (the same
// directories).
func (r *Runtime) stopCgroupAt(ctx context.Context, id, path string, done cgroups.Manager) error {
	d, err := r.cgroupDriver()
	if err != nil || d == nil {
		return err
	}
	m, err := d.Manager(id, path)
	if err != nil {
		return err
	}
	if done != nil && maps.Equal(m.Paths(), done.Paths()) {
		return nil
	}
	return StopCgroup(ctx, m, r.log)
}
