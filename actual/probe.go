package actual

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/sys"
)

// readState reads container name's executor state; with pin, *pidfd is a
// pidfd on its init when that is alive.
//
// What it says about the init is evidence only: an exit record, a /proc
// entry that is gone, a zombie, another start time under the PID. A
// failure to look (EMFILE, ENFILE, ENOMEM, EAGAIN, EIO…: anything with an
// errno) says nothing about the container and is returned as an error,
// never as a dead init or an empty cgroup: the loop then retries the
// container later and does nothing to it meanwhile.
func (s *Store) readState(name string, pin bool, pidfd *int) (*Container, map[string]string, error) {
	st, err := executor.ReadState(s.root, name)
	if err != nil {
		if errors.Is(err, executor.ErrNotExist) {
			// ReadState says so when the state directory cannot be
			// stat'ed, for whatever reason: only ENOENT is evidence.
			if _, serr := os.Lstat(executor.StateDir(s.root, name)); serr == nil {
				return nil, nil, observeError(name, fmt.Errorf("%w, yet its state directory is there", err))
			} else if !errors.Is(serr, fs.ErrNotExist) {
				return nil, nil, observeError(name, serr)
			}
			return nil, nil, err
		}
		if ioFailure(err) {
			return nil, nil, observeError(name, err)
		}
		// A state file that cannot be parsed was left half-written (the
		// executor writes it atomically, so this is a crash or a full
		// disk): it is a container being created, which the planner
		// deletes and redoes.
		s.log.Warn("unreadable container state; treating it as half-created", "container", name, "err", err)
		return &Container{Name: name, Status: StatusCreating}, nil, nil
	}
	if st.Status == executor.StatusStopped && !st.Exited && st.Pid > 0 {
		// ReadState says stopped also when it could not read the init's
		// /proc entry at all: ask again, telling a failure from a death.
		alive, err := proc.Alive(st.Pid, st.PidStartTime)
		if err != nil {
			return nil, nil, observeError(name, err)
		}
		if alive {
			return nil, nil, observeError(name, fmt.Errorf("its state says stopped but init %d runs (a failed read of /proc/%d)", st.Pid, st.Pid))
		}
		monitor, err := proc.Alive(st.MonitorPid, st.MonitorStartTime)
		if err != nil {
			return nil, nil, observeError(name, err)
		}
		if monitor {
			// The init is gone and its monitor is about to record how it
			// ended: give it a moment, so the exit status is known.
			waitExit(st.MonitorPid, st.MonitorStartTime, monitorGrace)
			if again, err := executor.ReadState(s.root, name); err == nil && again.Status == executor.StatusStopped {
				st = again
			}
		}
	}
	c := &Container{
		Name:         name,
		Status:       st.Status,
		Pid:          st.Pid,
		PidStartTime: st.PidStartTime,
		Exited:       st.Exited,
		ExitCode:     st.ExitCode,
		OOMKilled:    st.OOMKilled,
		Created:      st.Created,
		Started:      st.Started,
		Finished:     st.Finished,
	}
	// ReadState already says stopped for an init that is gone or whose PID
	// was reused; check again, as the planner believes InitAlive.
	fd := -1
	if pin && (c.Status == StatusCreated || c.Status == StatusRunning) && st.Pid > 0 {
		// Opened before the check: if the start time matches after, fd is
		// our init and not a process that reused its PID.
		if f, err := unix.PidfdOpen(st.Pid, 0); err == nil {
			fd = f
		}
	}
	alive := false
	if c.Status == StatusCreated || c.Status == StatusRunning {
		if alive, err = proc.Alive(st.Pid, st.PidStartTime); err != nil {
			closePidfd(fd)
			return nil, nil, observeError(name, err)
		}
	}
	if alive {
		c.InitAlive = true
		c.CgroupHasProcs = true
		c.Paused, err = frozen(st.CgroupPaths)
	} else {
		c.CgroupHasProcs, err = cgroupHasProcs(st.CgroupPaths)
	}
	if err != nil {
		closePidfd(fd)
		return nil, nil, observeError(name, err)
	}
	if alive {
		*pidfd, fd = fd, -1
	}
	closePidfd(fd)
	return c, st.CgroupPaths, nil
}

// observeError is a failure to observe container name: no evidence of
// anything about it.
func observeError(name string, err error) error {
	return fmt.Errorf("unable to observe container %s: %w", name, err)
}

// ioFailure says whether err is a failure to read (it carries an errno:
// EMFILE, ENOMEM, EIO…) rather than something read that made no sense.
func ioFailure(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno)
}

// pidfdAlive says whether the process of pidfd fd has not exited (a
// pidfd polls readable once it has, zombie included). A failed poll says
// false: the caller then reads the container in full, which tells a
// failure from an exit.
func pidfdAlive(fd int) bool {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds[:], 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n == 0
	}
}

func closePidfd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// monitorGrace bounds how long read waits for a monitor to record an exit.
const monitorGrace = 500 * time.Millisecond

// waitExit waits up to timeout for the process (pid, start) to exit.
func waitExit(pid int, start uint64, timeout time.Duration) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if got, _, err := proc.StartTime(pid); err != nil || got != start {
		return
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == nil && n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// cgroupHasProcs says whether the container's cgroup holds a process. It
// reads cgroup.procs in the unified hierarchy if the container has a cgroup
// there, else in the first v1 controller that has one. A cgroup that is
// gone holds nothing; one that cannot be read is an error.
func cgroupHasProcs(paths map[string]string) (bool, error) {
	for _, k := range cgroupOrder(paths) {
		data, err := sys.ReadFile(filepath.Join(paths[k], "cgroup.procs"))
		if err != nil {
			if proc.Gone(err) {
				continue // this hierarchy's cgroup is gone; try another
			}
			return false, err
		}
		return len(bytes.TrimSpace(data)) > 0, nil
	}
	return false, nil
}

func cgroupOrder(paths map[string]string) []string {
	preferred := []string{"", "pids", "memory", "cpu", "freezer"}
	var out []string
	for _, k := range preferred {
		if _, ok := paths[k]; ok {
			out = append(out, k)
		}
	}
	for k := range paths {
		if !slices.Contains(preferred, k) {
			out = append(out, k)
		}
	}
	return out
}

// frozen says whether the container's cgroup is frozen (v1 freezer.state,
// or cgroup.freeze in the unified hierarchy). A cgroup that is gone is not
// frozen; one that cannot be read is an error.
func frozen(paths map[string]string) (bool, error) {
	var buf [64]byte
	if p, ok := paths["freezer"]; ok {
		n, err := sys.ReadSmall(p+"/freezer.state", buf[:])
		if err == nil {
			st := string(bytes.TrimSpace(buf[:n]))
			return st == "FROZEN" || st == "FREEZING", nil
		}
		if !proc.Gone(err) {
			return false, err
		}
	}
	if p, ok := paths[""]; ok {
		n, err := sys.ReadSmall(p+"/cgroup.freeze", buf[:])
		if err == nil {
			return string(bytes.TrimSpace(buf[:n])) == "1", nil
		}
		if !proc.Gone(err) {
			return false, err
		}
	}
	return false, nil
}
