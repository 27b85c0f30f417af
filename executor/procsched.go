package executor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/sys"
)

// process.scheduler and process.ioPriority are set by the creator on
// every thread of the init (sched_setattr and ioprio_set take a thread's
// ID), once the init is in its cgroups and before it runs anything of the
// container's: a realtime policy is refused by the kernel outside a cpu
// cgroup with realtime runtime, so it is set there, as runc sets it in
// its init before the exec.

var schedPolicies = map[specs.LinuxSchedulerPolicy]uint32{
	specs.SchedOther:    unix.SCHED_NORMAL,
	specs.SchedFIFO:     unix.SCHED_FIFO,
	specs.SchedRR:       unix.SCHED_RR,
	specs.SchedBatch:    unix.SCHED_BATCH,
	specs.SchedIdle:     unix.SCHED_IDLE,
	specs.SchedDeadline: unix.SCHED_DEADLINE,
}

var schedFlags = map[specs.LinuxSchedulerFlag]uint64{
	specs.SchedFlagResetOnFork: unix.SCHED_FLAG_RESET_ON_FORK,
	specs.SchedFlagReclaim:     unix.SCHED_FLAG_RECLAIM,
	specs.SchedFlagDLOverrun:   unix.SCHED_FLAG_DL_OVERRUN,
}

// schedAttr is process.scheduler as sched_setattr(2) takes it, or what
// is wrong with it, naming the field.
func schedAttr(s *specs.Scheduler) (*unix.SchedAttr, error) {
	policy, ok := schedPolicies[s.Policy]
	if !ok {
		return nil, fmt.Errorf("process.scheduler.policy %q: not a policy this runtime knows (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE, SCHED_FIFO, SCHED_RR or SCHED_DEADLINE)", s.Policy)
	}
	if s.Nice < -20 || s.Nice > 19 {
		return nil, fmt.Errorf("process.scheduler.nice %d: a nice value is from -20 to 19", s.Nice)
	}
	realtime := policy == unix.SCHED_FIFO || policy == unix.SCHED_RR
	switch {
	case realtime && (s.Priority < 1 || s.Priority > 99):
		return nil, fmt.Errorf("process.scheduler.priority %d: %s needs a priority from 1 to 99", s.Priority, s.Policy)
	case !realtime && s.Priority != 0:
		return nil, fmt.Errorf("process.scheduler.priority %d: only SCHED_FIFO and SCHED_RR take a priority (leave it out for %s)", s.Priority, s.Policy)
	}
	deadline := policy == unix.SCHED_DEADLINE
	switch {
	case !deadline && (s.Runtime != 0 || s.Deadline != 0 || s.Period != 0):
		return nil, fmt.Errorf("process.scheduler: runtime, deadline and period are for SCHED_DEADLINE only (leave them out for %s)", s.Policy)
	case deadline && (s.Runtime == 0 || s.Deadline < s.Runtime || (s.Period != 0 && s.Period < s.Deadline)):
		return nil, fmt.Errorf("process.scheduler: SCHED_DEADLINE needs 0 < runtime <= deadline <= period (period 0: the deadline), got runtime %d, deadline %d, period %d", s.Runtime, s.Deadline, s.Period)
	}
	attr := &unix.SchedAttr{Policy: policy, Nice: s.Nice, Priority: uint32(s.Priority), Runtime: s.Runtime, Deadline: s.Deadline, Period: s.Period}
	for _, f := range s.Flags {
		bit, ok := schedFlags[f]
		if !ok {
			return nil, fmt.Errorf("process.scheduler.flags: %q is %w by this runtime (SCHED_FLAG_RESET_ON_FORK, SCHED_FLAG_RECLAIM and SCHED_FLAG_DL_OVERRUN are)", f, ErrNotSupported)
		}
		attr.Flags |= bit
	}
	return attr, nil
}

var ioprioClasses = map[specs.IOPriorityClass]int{
	specs.IOPRIO_CLASS_RT:   1,
	specs.IOPRIO_CLASS_BE:   2,
	specs.IOPRIO_CLASS_IDLE: 3,
}

// ioprio is process.ioPriority as ioprio_set(2) takes it (class << 13 |
// level), or what is wrong with it.
func ioprio(p *specs.LinuxIOPriority) (int, error) {
	class, ok := ioprioClasses[p.Class]
	if !ok {
		return 0, fmt.Errorf("process.ioPriority.class %q: not a class (IOPRIO_CLASS_RT, IOPRIO_CLASS_BE or IOPRIO_CLASS_IDLE)", p.Class)
	}
	if p.Priority < 0 || p.Priority > 7 {
		return 0, fmt.Errorf("process.ioPriority.priority %d: a level is from 0 (highest) to 7", p.Priority)
	}
	return class<<13 | p.Priority, nil
}

// checkProcessSched refuses a process.scheduler or process.ioPriority
// that could never be set.
func checkProcessSched(p *specs.Process) error {
	if p.Scheduler != nil {
		if _, err := schedAttr(p.Scheduler); err != nil {
			return err
		}
	}
	if p.IOPriority != nil {
		if _, err := ioprio(p.IOPriority); err != nil {
			return err
		}
	}
	return nil
}

// checkRealtime refuses a realtime policy where the kernel would refuse
// it, before anything is made: a cpu cgroup of cgroup v1 with realtime
// group scheduling gets no realtime runtime unless
// linux.resources.cpu.realtimeRuntime gives it some (and an init already
// realtime could not even join it).
func checkRealtime(s *specs.Spec) error {
	sch := s.Process.Scheduler
	if sch == nil || (sch.Policy != specs.SchedFIFO && sch.Policy != specs.SchedRR) {
		return nil
	}
	if l := s.Linux; l != nil && l.Resources != nil && l.Resources.CPU != nil && l.Resources.CPU.RealtimeRuntime != nil && *l.Resources.CPU.RealtimeRuntime > 0 {
		return nil
	}
	layout, err := cgroups.DetectLayout()
	if err != nil {
		return nil // the cgroup setup says what is wrong
	}
	dir, ok := layout.V1["cpu"]
	if !ok {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "cpu.rt_runtime_us")); err != nil {
		return nil
	}
	return fmt.Errorf("process.scheduler.policy %s: on this host a realtime policy needs realtime runtime in the container's cpu cgroup: set linux.resources.cpu.realtimeRuntime (and realtimePeriod)", sch.Policy)
}

// setProcessSched gives every thread of the init pid what
// process.scheduler and process.ioPriority ask for.
func setProcessSched(pid int, p *specs.Process) error {
	if p.Scheduler != nil {
		attr, err := schedAttr(p.Scheduler)
		if err != nil {
			return err
		}
		if err := sys.SetThreads(pid, attr); err != nil {
			if errors.Is(err, unix.EPERM) && (attr.Policy == unix.SCHED_FIFO || attr.Policy == unix.SCHED_RR) {
				return fmt.Errorf("process.scheduler: %w (a realtime policy needs realtime runtime in the container's cpu cgroup: linux.resources.cpu.realtimeRuntime)", err)
			}
			return fmt.Errorf("process.scheduler: %w", err)
		}
	}
	if p.IOPriority != nil {
		prio, err := ioprio(p.IOPriority)
		if err != nil {
			return err
		}
		if err := sys.EachThread(pid, func(tid int) error {
			const ioprioWhoProcess = 1
			if _, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), uintptr(prio)); e != 0 {
				return fmt.Errorf("ioprio_set of thread %d: %w", tid, e)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("process.ioPriority: %w", err)
		}
	}
	return nil
}
