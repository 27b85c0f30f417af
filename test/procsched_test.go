package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil"
)

// statSched is testutil.StatSched of an exec'd process's report.
func statSched(t *testing.T, stat string) (policy, nice int) {
	t.Helper()
	policy, nice, _, err := testutil.StatSched(stat)
	if err != nil {
		t.Fatal(err)
	}
	return policy, nice
}

// pidSched is process pid's policy, nice value and I/O priority
// (sched_getattr, ioprio_get: class << 13 | level).
func pidSched(t *testing.T, pid int) (policy, nice, ioprio int) {
	t.Helper()
	a, err := unix.SchedGetAttr(pid, 0)
	if err != nil {
		t.Fatalf("sched_getattr %d: %v", pid, err)
	}
	const ioprioWhoProcess = 1
	r, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(pid), 0)
	if e != 0 {
		t.Fatalf("ioprio_get %d: %v", pid, e)
	}
	return int(a.Policy), int(a.Nice), int(r)
}

// process.scheduler and process.ioPriority are what the container's
// process runs with, with either init, and an exec'd process too; exec
// --process FILE gives its own.
func TestProcessScheduler(t *testing.T) {
	const idleClass, beClass = 3 << 13, 2 << 13
	edit := func(s *specs.Spec) {
		s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedBatch, Nice: 7}
		s.Process.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_IDLE}
	}
	bothInits(t, nil, func(t *testing.T) {
		c := newRuncCLI(t)
		id := testutil.Name(t, 40)
		c.cleanup(id)
		c.ok(bundle(t, edit, "sleep", "300"), "run", "-d", id)
		var st struct{ Pid int }
		if err := json.Unmarshal([]byte(c.ok("/", "state", id)), &st); err != nil || st.Pid <= 0 {
			t.Fatalf("state: %+v, %v", st, err)
		}
		if p, n, io := pidSched(t, st.Pid); p != unix.SCHED_BATCH || n != 7 || io != idleClass {
			t.Errorf("the container's process: policy %d nice %d ioprio %#x, want SCHED_BATCH (3), nice 7, IOPRIO_CLASS_IDLE (%#x)", p, n, io, idleClass)
		}
		// An exec'd process has the container's.
		if p, n := statSched(t, c.ok("/", "exec", id, "cat", "/proc/self/stat")); p != unix.SCHED_BATCH || n != 7 {
			t.Errorf("an exec'd process: policy %d nice %d, want the container's SCHED_BATCH nice 7", p, n)
		}
		// exec --process FILE: the file's.
		proc := filepath.Join(t.TempDir(), "process.json")
		js, _ := json.Marshal(specs.Process{Args: []string{"sleep", "200"}, Env: []string{"PATH=/bin"}, Cwd: "/",
			Scheduler:  &specs.Scheduler{Policy: specs.SchedIdle},
			IOPriority: &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 4}})
		if err := os.WriteFile(proc, js, 0o644); err != nil {
			t.Fatal(err)
		}
		pidFile := filepath.Join(t.TempDir(), "pid")
		c.ok("/", "exec", "-d", "--pid-file", pidFile, "--process", proc, id)
		data, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		if p, _, io := pidSched(t, atoi(t, strings.TrimSpace(string(data)))); p != unix.SCHED_IDLE || io != beClass|4 {
			t.Errorf("exec --process with its own: policy %d ioprio %#x, want SCHED_IDLE (5), IOPRIO_CLASS_BE level 4 (%#x)", p, io, beClass|4)
		}
	})
}

// A process.scheduler or process.ioPriority the kernel would refuse, or
// that this runtime cannot give, fails the create naming the field.
func TestProcessSchedulerRefused(t *testing.T) {
	c := newRuncCLI(t)
	cases := []struct {
		name string
		edit func(*specs.Process)
		want string
	}{
		{"unknown policy", func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedISO} }, `process.scheduler.policy "SCHED_ISO"`},
		{"fifo without priority", func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedFIFO} }, "process.scheduler.priority 0"},
		{"priority for batch", func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedBatch, Priority: 3} }, "only SCHED_FIFO and SCHED_RR take a priority"},
		{"nice out of range", func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedOther, Nice: 20} }, "process.scheduler.nice 20"},
		{"deadline without runtime", func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedDeadline, Deadline: 10} }, "SCHED_DEADLINE needs"},
		{"keep-policy flag", func(p *specs.Process) {
			p.Scheduler = &specs.Scheduler{Policy: specs.SchedOther, Flags: []specs.LinuxSchedulerFlag{specs.SchedFlagKeepPolicy}}
		}, `process.scheduler.flags: "SCHED_FLAG_KEEP_POLICY" is not supported`},
		{"io class", func(p *specs.Process) { p.IOPriority = &specs.LinuxIOPriority{Class: "IOPRIO_CLASS_X"} }, `process.ioPriority.class "IOPRIO_CLASS_X"`},
		{"io level", func(p *specs.Process) {
			p.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 8}
		}, "process.ioPriority.priority 8"},
	}
	// A realtime policy in a cpu cgroup with no realtime runtime (cgroup
	// v1 with realtime group scheduling): the kernel refuses it.
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"); err == nil {
		cases = append(cases, struct {
			name string
			edit func(*specs.Process)
			want string
		}{"fifo without realtime runtime", func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedFIFO, Priority: 10} }, "linux.resources.cpu.realtimeRuntime"})
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := testutil.Name(t, 30) + "-" + strconv.Itoa(i)
			c.cleanup(id)
			b := bundle(t, func(s *specs.Spec) { tc.edit(s.Process) }, "true")
			res := c.runIn(b, "run", id)
			if res.code == 0 || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("run: exit %d, stderr %q; want a failure naming %q", res.code, res.stderr, tc.want)
			}
		})
	}
	// exec --process with execCPUAffinity: refused, not dropped.
	id := testutil.Name(t, 30) + "-exec"
	c.cleanup(id)
	c.ok(bundle(t, nil, "sleep", "300"), "run", "-d", id)
	proc := filepath.Join(t.TempDir(), "process.json")
	js, _ := json.Marshal(specs.Process{Args: []string{"true"}, Cwd: "/", ExecCPUAffinity: &specs.CPUAffinity{Initial: "0"}})
	if err := os.WriteFile(proc, js, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := c.runIn("/", "exec", "--process", proc, id); res.code == 0 || !strings.Contains(res.stderr, "execCPUAffinity") {
		t.Errorf("exec --process with execCPUAffinity: exit %d, %q; want refused naming the field", res.code, res.stderr)
	}
}
