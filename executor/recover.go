package executor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/proc"
)

// RecoverStart finishes the start of a container whose start was cut short
// after its init exec'd the user's process: the process that ran Start died
// (a daemon killed with SIGKILL) between the exec and recording it, so the
// state still says created and the exec fifo is still there. It removes the
// fifo, records the container running and returns true. It returns false,
// changing nothing, for a container not in that situation (one whose init
// still waits for start, or that is not created). Start does the same by
// itself, and StartState reports it; RecoverStart is for a caller that
// wants to know without starting a container that still waits.
//
// The init is known to have exec'd when /proc/PID/exe of the init is no
// longer the runtime binary it was started from (recorded in the state;
// the init refuses to exec the runtime's own binary, so the two cannot be
// the same file afterwards).
func (r *Runtime) RecoverStart(ctx context.Context, id string) (bool, error) {
	st, err := ReadState(r.root, id)
	if err != nil {
		return false, err
	}
	if st.Status != StatusCreated || !initExecd(st) {
		return false, nil
	}
	if err := r.recordStarted(ctx, id, st, true); err != nil {
		return false, fmt.Errorf("recover start of container %s: %w", id, err)
	}
	return true, nil
}

// initExecd reports whether st's init (alive, checked by start time) runs
// another executable than its monitor and than the waiter, that is, exec'd
// the user's process.
//
// The init's executable is opened once and everything is decided on that
// one file: it changes under us (Go init -> waiter right after create), and
// a link read and a stat taken a moment apart could see two different ones.
func initExecd(st *State) bool {
	// The monitor, there to the end unless the caller reaps (then it is
	// gone once the container is created, and the runtime binary's
	// identity is in the state).
	mon, monStart := st.waited()
	if mon <= 0 || !proc.Running(st.Pid, st.PidStartTime) || !proc.Running(mon, monStart) {
		return false
	}
	fd, err := unix.Open("/proc/"+strconv.Itoa(st.Pid)+"/exe", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	// The waiter or the runner init (executor/waiter) still waits for
	// the fifo.
	if link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err != nil || strings.Contains(link, "memfd:reconciled-waiter") || strings.Contains(link, "memfd:reconciled-setup") {
		return false
	}
	var initExe, runtimeExe unix.Stat_t
	if err := unix.Fstat(fd, &initExe); err != nil {
		return false
	}
	if st.RuntimeExeIno != 0 {
		runtimeExe.Dev, runtimeExe.Ino = st.RuntimeExeDev, st.RuntimeExeIno
	} else if err := unix.Stat("/proc/"+strconv.Itoa(st.MonitorPid)+"/exe", &runtimeExe); err != nil {
		// A state from before the reaper: its monitor runs the runtime.
		return false
	}
	// Both still the same processes (a PID reused meanwhile is not ours).
	if !proc.Running(st.Pid, st.PidStartTime) || !proc.Running(mon, monStart) {
		return false
	}
	return initExe.Dev != runtimeExe.Dev || initExe.Ino != runtimeExe.Ino
}
