package sys

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Sched is a thread's CFS scheduling: its policy (SCHED_OTHER or
// SCHED_BATCH here) and nice value.
type Sched struct {
	Policy uint32
	Nice   int32
}

func (s Sched) attr() *unix.SchedAttr {
	return &unix.SchedAttr{Policy: s.Policy, Nice: s.Nice}
}

// started is what this process's threads had before Batch switched them
// (nil: never switched); AsStarted and ResetStarted give it to the
// processes started for others.
var started atomic.Pointer[Sched]

// Batch switches every thread of this process from SCHED_OTHER to
// SCHED_BATCH, the nice value kept, and returns true; a process that was
// started with another policy (an operator's CPUSchedulingPolicy=, a
// reset-on-fork flag) is left as it is, and false is returned. Threads
// made later inherit the policy of the thread that makes them.
//
// SCHED_BATCH is SCHED_OTHER without wake-up preemption: a thread that
// wakes waits for the CPU's current task to use up its slice rather than
// taking the CPU at once (the weight is the same). For a process whose
// threads wake one another all the time, that is fewer context switches
// for the same work. Whatever it starts for others (containers, hooks, a
// command run in a container) must not inherit it: see AsStarted and
// ResetStarted.
func Batch() (bool, error) {
	self, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return false, fmt.Errorf("sched_getattr: %w", err)
	}
	if self.Policy != unix.SCHED_NORMAL || self.Flags&unix.SCHED_FLAG_RESET_ON_FORK != 0 {
		return false, nil
	}
	orig := Sched{Policy: self.Policy, Nice: self.Nice}
	// Published first: a thread made meanwhile from a switched one is
	// already batch, and AsStarted must know what to give back.
	started.Store(&orig)
	if err := setThreads(os.Getpid(), Sched{Policy: unix.SCHED_BATCH, Nice: orig.Nice}); err != nil {
		// Those already switched stay so; what starts for others still
		// gets orig.
		return true, err
	}
	return true, nil
}

// Batched says whether Batch switched this process.
func Batched() bool { return started.Load() != nil }

// AsStarted runs start, which starts a process for someone else (a
// container's command, a hook), so that the process gets the scheduling
// this process had before Batch: on a thread of its own that has it (a
// child inherits the forking thread's). Without Batch it just runs start.
func AsStarted(start func() error) error {
	s := started.Load()
	if s == nil {
		return start()
	}
	var err error
	OnOwnThread(func() {
		if err = SetStartedHere(); err == nil {
			err = start()
		}
	})
	return err
}

// SetStartedHere gives the calling thread, which must be locked to its
// goroutine and never unlocked (OnOwnThread), the scheduling this process
// had before Batch, for a process it then forks. Without Batch it does
// nothing.
func SetStartedHere() error {
	s := started.Load()
	if s == nil {
		return nil
	}
	if err := unix.SchedSetAttr(0, s.attr(), 0); err != nil {
		return fmt.Errorf("sched_setattr: %w", err)
	}
	return nil
}

// ResetStarted gives every thread of process pid, started from a switched
// thread before it runs anything of someone else's (a container's init
// that still waits for its configuration), the scheduling this process
// had before Batch. Without Batch it does nothing.
func ResetStarted(pid int) error {
	s := started.Load()
	if s == nil {
		return nil
	}
	if pid <= 0 {
		return fmt.Errorf("setting the scheduling of process %d: not a process", pid)
	}
	return setThreads(pid, *s)
}

// setThreads gives every thread of pid s.
func setThreads(pid int, s Sched) error { return SetThreads(pid, s.attr()) }

// SetThreads gives every thread of process pid the scheduling attr
// (sched_setattr(2) sets one thread's).
func SetThreads(pid int, attr *unix.SchedAttr) error {
	return EachThread(pid, func(tid int) error {
		// SchedSetAttr writes the size into attr: a copy each time.
		a := *attr
		if err := unix.SchedSetAttr(tid, &a, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("sched_setattr of thread %d of process %d: %w", tid, pid, err)
		}
		return nil
	})
}

// EachThread calls f with the ID of every thread of process pid, and
// looks again until a pass finds none it has not seen: a thread made
// meanwhile from one not yet done would have been missed.
func EachThread(pid int, f func(tid int) error) error {
	seen := map[int]bool{}
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	for pass := 0; ; pass++ {
		tids, err := readTids(dir)
		if err != nil {
			return err
		}
		fresh := 0
		for _, tid := range tids {
			if seen[tid] {
				continue
			}
			seen[tid] = true
			fresh++
			if err := f(tid); err != nil {
				return err
			}
		}
		if fresh == 0 {
			return nil
		}
		if pass == 100 {
			return fmt.Errorf("process %d: threads still being made after 100 passes over %s", pid, dir)
		}
	}
}

func readTids(dir string) ([]int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	tids := make([]int, 0, len(names))
	for _, n := range names {
		if tid, err := strconv.Atoi(n); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
