package cgroups

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/testutil"
)

// helperEnv makes the test binary a helper process (see helperMain).
const helperEnv = "RECONCILED_CGROUPS_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		helperMain(mode)
		return
	}
	os.Exit(m.Run())
}

var sink [][]byte

// helperMain runs in the helper process. "spin": burn CPU until killed.
// "cmd": read commands from stdin, one per line, answer one line each:
// "alloc N" allocates N MiB and touches every page ("ok"), "open PATH"
// and "openw PATH" open PATH for reading or writing, "mknod PATH c|b
// MAJOR MINOR" makes a device node ("ok" or the error).
func helperMain(mode string) {
	if mode == "spin" {
		fmt.Println("ready")
		for x := 0; ; x++ {
			_ = x * x
		}
	}
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "alloc":
			n, _ := strconv.Atoi(arg)
			b := make([]byte, n<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			sink = append(sink, b)
			fmt.Println("ok")
		case "open", "openw":
			flag := os.O_RDONLY
			if cmd == "openw" {
				flag = os.O_WRONLY
			}
			f, err := os.OpenFile(arg, flag, 0)
			if err != nil {
				fmt.Println(err)
				continue
			}
			f.Close()
			fmt.Println("ok")
		case "mknod":
			// mknod PATH c|b MAJOR MINOR
			var path, typ string
			var major, minor uint32
			fmt.Sscan(arg, &path, &typ, &major, &minor)
			mode := uint32(syscall.S_IFCHR)
			if typ == "b" {
				mode = syscall.S_IFBLK
			}
			if err := syscall.Mknod(path, mode|0o600, int(major<<8|minor)); err != nil {
				fmt.Println("mknod:", err)
				continue
			}
			fmt.Println("ok")
		default:
			fmt.Println("unknown command", cmd)
		}
	}
	os.Exit(0)
}

type helper struct {
	t    *testing.T
	cmd  *exec.Cmd
	in   io.Writer
	out  *bufio.Reader
	done chan error
}

// startHelper starts the test binary as a helper, killed by PID in
// t.Cleanup.
func startHelper(t *testing.T, mode string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "GOGC=off")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, cmd: cmd, in: in, out: bufio.NewReader(out), done: make(chan error, 1)}
	t.Cleanup(func() {
		// A frozen process dies of SIGKILL too.
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Errorf("killing helper %d: %v", cmd.Process.Pid, err)
		}
		h.wait()
	})
	if line := h.line(); line != "ready" {
		t.Fatalf("helper said %q", line)
	}
	return h
}

func (h *helper) pid() int { return h.cmd.Process.Pid }

func (h *helper) line() string {
	h.t.Helper()
	s, err := h.out.ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(s)
}

func (h *helper) ask(cmd string) string {
	h.t.Helper()
	if _, err := fmt.Fprintln(h.in, cmd); err != nil {
		return "error: " + err.Error()
	}
	return h.line()
}

// wait waits for the helper to end (once; later calls return the same).
func (h *helper) wait() error {
	go func() {
		if h.cmd.ProcessState == nil {
			h.done <- h.cmd.Wait()
		}
	}()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(10 * time.Second):
		return errors.New("helper did not end")
	}
}

// realManager returns a manager of the host's cgroupfs driver for a
// cgroup named after the test (at cgroupsPath when given, under
// DefaultParent otherwise), destroyed in t.Cleanup, after which no
// directory named after the test may be left in any hierarchy.
func realManager(t *testing.T, cgroupsPath string) (Manager, Layout) {
	t.Helper()
	testutil.RequireRoot(t)
	t.Parallel()
	l, err := DetectLayout()
	if err != nil {
		testutil.SkipOrFail(t, "no cgroup hierarchy: %v", err)
	}
	return realManagerAt(t, l, cgroupsPath), l
}

func realManagerAt(t *testing.T, l Layout, cgroupsPath string) Manager {
	t.Helper()
	d, err := NewCgroupfsAt(l)
	if err != nil {
		t.Fatal(err)
	}
	id := testutil.Name(t, 60)
	m, err := d.Manager(id, cgroupsPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Destroy(ctx); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		mounts := map[string]bool{l.Unified: l.Unified != ""}
		for _, mnt := range l.V1 {
			mounts[mnt] = true
		}
		for mnt, ok := range mounts {
			if !ok {
				continue
			}
			filepath.WalkDir(mnt, func(p string, e os.DirEntry, err error) error {
				if err != nil || !e.IsDir() {
					return nil
				}
				if strings.Contains(e.Name(), id) {
					t.Errorf("left on the host: %s", p)
					return filepath.SkipDir
				}
				return nil
			})
		}
	})
	return m
}

func readBack(t *testing.T, m Manager, key, file string) string {
	t.Helper()
	dir, ok := m.Paths()[key]
	if !ok {
		t.Fatalf("no %q hierarchy in %v", key, m.Paths())
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestRealApply(t *testing.T) {
	m, l := realManager(t, "")
	h := startHelper(t, "cmd")
	ctx := context.Background()
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20), Swap: ptr[int64](96 << 20), KernelTCP: ptr[int64](16 << 20)},
		CPU:    &specs.LinuxCPU{Shares: ptr[uint64](512), Quota: ptr[int64](50000), Period: ptr[uint64](100000)},
		Pids:   &specs.LinuxPids{Limit: ptr[int64](32)},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rwm"},
		},
	}
	if err := m.Apply(ctx, h.pid(), r); err != nil {
		t.Fatal(err)
	}
	switch l.Mode() {
	case ModeLegacy, ModeHybrid:
		for file, want := range map[[2]string]string{
			{"memory", "memory.limit_in_bytes"}:          "67108864",
			{"memory", "memory.memsw.limit_in_bytes"}:    "100663296",
			{"memory", "memory.kmem.tcp.limit_in_bytes"}: "16777216",
			{"cpu", "cpu.shares"}:                        "512",
			{"cpu", "cpu.cfs_quota_us"}:                  "50000",
			{"cpu", "cpu.cfs_period_us"}:                 "100000",
			{"pids", "pids.max"}:                         "32",
			{"devices", "devices.list"}:                  "c 1:3 rwm",
		} {
			if got := readBack(t, m, file[0], file[1]); got != want {
				t.Errorf("%s = %q, want %q", file[1], got, want)
			}
		}
		// The cpuset was filled from the parent, so the pid could join.
		if l.V1["cpuset"] != "" {
			root, err := os.ReadFile(filepath.Join(l.V1["cpuset"], "cpuset.cpus"))
			if err != nil {
				t.Fatal(err)
			}
			if got := readBack(t, m, "cpuset", "cpuset.cpus"); got != strings.TrimSpace(string(root)) {
				t.Errorf("cpuset.cpus = %q, want the root's %q", got, root)
			}
			if err := m.Set(ctx, &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0"}}); err != nil {
				t.Fatal(err)
			}
			if got := readBack(t, m, "cpuset", "cpuset.cpus"); got != "0" {
				t.Errorf("cpuset.cpus = %q after Set, want 0", got)
			}
		}
		// The kernel's refusal names the file and the value.
		err := m.Set(ctx, &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](500)}})
		if want := `writing "500" to ` + filepath.Join(m.Paths()["cpu"], "cpu.cfs_quota_us") + ": invalid argument"; err == nil || err.Error() != want {
			t.Errorf("quota below the minimum: %v, want %s", err, want)
		}
	case ModeUnified:
		for file, want := range map[string]string{
			"memory.max": "67108864", "memory.swap.max": "33554432",
			"cpu.weight": "20", "cpu.max": "50000 100000", "pids.max": "32",
		} {
			if got := readBack(t, m, "", file); got != want {
				t.Errorf("%s = %q, want %q", file, got, want)
			}
		}
	}
	// The devices rules hold (the v1 controller, or the eBPF program on
	// v2): /dev/null opens, /dev/zero does not.
	if got := h.ask("open /dev/null"); got != "ok" {
		t.Errorf("open /dev/null: %s", got)
	}
	if got := h.ask("open /dev/zero"); !strings.Contains(got, "operation not permitted") {
		t.Errorf("open /dev/zero: %s, want EPERM", got)
	}
	// The process is in every hierarchy (the unified one on hybrid too).
	for key, dir := range m.Paths() {
		pids, err := readProcs(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(pids, h.pid()) {
			t.Errorf("hierarchy %q: cgroup.procs %v lacks %d", key, pids, h.pid())
		}
	}
	pids, err := m.Procs(ctx)
	if err != nil || !slices.Equal(pids, []int{h.pid()}) {
		t.Errorf("Procs() = %v, %v; want [%d]", pids, err, h.pid())
	}

	// Set in place: more memory (memsw grows first), no quota.
	if err := m.Set(ctx, &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr[int64](256 << 20), Swap: ptr[int64](512 << 20)},
		CPU:    &specs.LinuxCPU{Quota: ptr[int64](-1)},
	}); err != nil {
		t.Fatal(err)
	}
	// And back down (the limit shrinks first).
	if err := m.Set(ctx, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](32 << 20), Swap: ptr[int64](32 << 20)}}); err != nil {
		t.Fatal(err)
	}
	switch l.Mode() {
	case ModeLegacy, ModeHybrid:
		if got := readBack(t, m, "memory", "memory.limit_in_bytes"); got != "33554432" {
			t.Errorf("memory.limit_in_bytes = %s after Set", got)
		}
		if got := readBack(t, m, "memory", "memory.memsw.limit_in_bytes"); got != "33554432" {
			t.Errorf("memory.memsw.limit_in_bytes = %s after Set", got)
		}
		if got := readBack(t, m, "cpu", "cpu.cfs_quota_us"); got != "-1" {
			t.Errorf("cpu.cfs_quota_us = %s after Set", got)
		}
	case ModeUnified:
		if got := readBack(t, m, "", "memory.max"); got != "33554432" {
			t.Errorf("memory.max = %s after Set", got)
		}
		if got := readBack(t, m, "", "cpu.max"); got != "max 100000" {
			t.Errorf("cpu.max = %s after Set", got)
		}
	}
	st, err := m.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryLimit != 32<<20 || st.PidsLimit != 32 || st.PidsCurrent == 0 {
		t.Errorf("Stats() = %+v", st)
	}
}

func TestRealStatsMemoryRises(t *testing.T) {
	m, _ := realManager(t, "")
	h := startHelper(t, "cmd")
	ctx := context.Background()
	if err := m.Apply(ctx, h.pid(), &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](512 << 20)}}); err != nil {
		t.Fatal(err)
	}
	before, err := m.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.ask("alloc 64"); got != "ok" {
		t.Fatalf("alloc: %s", got)
	}
	after, err := m.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before %+v\nafter  %+v", before, after)
	if after.MemoryUsage < before.MemoryUsage+48<<20 {
		t.Errorf("memory usage %d -> %d after allocating 64 MiB", before.MemoryUsage, after.MemoryUsage)
	}
	if after.MemoryMaxUsed != 0 && after.MemoryMaxUsed < after.MemoryUsage {
		t.Errorf("max usage %d below usage %d", after.MemoryMaxUsed, after.MemoryUsage)
	}
	if after.MemoryLimit != 512<<20 {
		t.Errorf("memory limit %d", after.MemoryLimit)
	}
	if after.CPUUsageNanos <= before.CPUUsageNanos {
		t.Errorf("cpu usage %d -> %d", before.CPUUsageNanos, after.CPUUsageNanos)
	}
	if after.PidsCurrent < 1 || after.PidsLimit != 0 || after.OOMKills != 0 {
		t.Errorf("pids %d (limit %d), oom kills %d", after.PidsCurrent, after.PidsLimit, after.OOMKills)
	}
}

func TestRealOOM(t *testing.T) {
	m, _ := realManager(t, "")
	h := startHelper(t, "cmd")
	ctx := context.Background()
	if err := m.Apply(ctx, h.pid(), &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](8 << 20), Swap: ptr[int64](8 << 20)}}); err != nil {
		t.Fatal(err)
	}
	h.ask("alloc 64") // answers nothing: killed
	err := h.wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("helper ended with %v, want killed", err)
	}
	if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("helper ended with %v, want SIGKILL", ws)
	}
	st, err := m.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.OOMKills < 1 {
		t.Errorf("OOMKills = %d after an OOM kill (stats %+v)", st.OOMKills, st)
	}
}

// cpuTicks is utime+stime of pid from /proc/PID/stat.
func cpuTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	st, err := proc.ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	return st.UTime + st.STime
}

func testFreeze(t *testing.T, m Manager, frozenFile func() string) {
	h := startHelper(t, "spin")
	ctx := context.Background()
	// Runs before the helper is killed: a frozen v1 task cannot die.
	t.Cleanup(func() {
		if err := m.Freeze(ctx, false); err != nil && !errors.Is(err, ErrNotExist) {
			t.Errorf("thaw in cleanup: %v", err)
		}
	})
	if err := m.Apply(ctx, h.pid(), nil); err != nil {
		t.Fatal(err)
	}
	if pids, err := m.Procs(ctx); err != nil || !slices.Equal(pids, []int{h.pid()}) {
		t.Errorf("Procs() = %v, %v; want [%d]", pids, err, h.pid())
	}
	if err := m.Freeze(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := frozenFile(); got != "frozen" {
		t.Errorf("after Freeze(true): %s", got)
	}
	a := cpuTicks(t, h.pid())
	time.Sleep(300 * time.Millisecond)
	if b := cpuTicks(t, h.pid()); b != a {
		t.Errorf("frozen process ran: %d -> %d ticks", a, b)
	}
	if err := m.Freeze(ctx, false); err != nil {
		t.Fatal(err)
	}
	if got := frozenFile(); got != "thawed" {
		t.Errorf("after Freeze(false): %s", got)
	}
	a = cpuTicks(t, h.pid())
	time.Sleep(300 * time.Millisecond)
	if b := cpuTicks(t, h.pid()); b == a {
		t.Errorf("thawed process did not run: %d ticks", a)
	}
	// Killing a frozen container: SIGKILL, then thaw (on v1 a frozen task
	// does not die before).
	if err := m.Freeze(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(h.pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := m.Freeze(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := h.wait(); err == nil {
		t.Error("helper exited cleanly, want killed")
	}
}

func TestRealFreeze(t *testing.T) {
	m, l := realManager(t, "")
	testFreeze(t, m, func() string {
		if l.Mode() != ModeUnified && l.V1["freezer"] != "" {
			switch s := readBack(t, m, "freezer", "freezer.state"); s {
			case "FROZEN":
				return "frozen"
			case "THAWED":
				return "thawed"
			default:
				return s
			}
		}
		return v2Frozen(t, m)
	})
}

func v2Frozen(t *testing.T, m Manager) string {
	ev, err := readKeyed(m.Paths()[""], "cgroup.events")
	if err != nil {
		t.Fatal(err)
	}
	if ev["frozen"] == 1 {
		return "frozen"
	}
	return "thawed"
}

// The v2 code against the real kernel on any host with a cgroup2 mount:
// on a hybrid host its hierarchy has no controllers, but placement,
// cgroup.freeze, cpu.stat and removal are real.
func TestRealV2Only(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	l, err := DetectLayout()
	if err != nil || l.Unified == "" {
		testutil.SkipOrFail(t, "no cgroup2 hierarchy (%v)", err)
	}
	m := realManagerAt(t, Layout{Unified: l.Unified}, "")
	testFreeze(t, m, func() string { return v2Frozen(t, m) })
	st, err := m.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUUsageNanos == 0 || st.CPUUserNanos == 0 {
		t.Errorf("no cpu usage from cpu.stat: %+v", st)
	}
	// The helper was killed: the cgroup is empty.
	pids, err := m.Procs(context.Background())
	if err != nil || len(pids) != 0 {
		t.Errorf("Procs() = %v, %v; want none", pids, err)
	}
}

// Destroy removes sub-cgroups the container made, the intermediate
// directories this manager made, and is idempotent.
func TestRealDestroy(t *testing.T) {
	testutil.RequireRoot(t)
	id := testutil.Name(t, 60)
	m, l := realManager(t, "/"+id+"/a/b")
	ctx := context.Background()
	h := startHelper(t, "cmd")
	if err := m.Apply(ctx, h.pid(), nil); err != nil {
		t.Fatal(err)
	}
	for _, dir := range m.Paths() {
		if err := os.MkdirAll(filepath.Join(dir, "inner", "deeper"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Busy: the process is still there.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := m.Destroy(short); err == nil || !errors.Is(err, syscall.EBUSY) {
		t.Errorf("Destroy with a live process: %v, want EBUSY", err)
	}
	syscall.Kill(h.pid(), syscall.SIGKILL)
	h.wait()
	if err := m.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(ctx); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	for key, dir := range m.Paths() {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("hierarchy %q: %s left (%v)", key, dir, err)
		}
	}
	mount := l.Unified
	if l.Mode() != ModeUnified {
		mount = l.V1["memory"]
	}
	if _, err := os.Stat(filepath.Join(mount, id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("intermediate %s left (%v)", filepath.Join(mount, id), err)
	}
	if _, err := m.Procs(ctx); !errors.Is(err, ErrNotExist) {
		t.Errorf("Procs after Destroy: %v", err)
	}
}

// hugePageSize is the first huge page size this machine has, named as the
// hugetlb controller names it ("2MB"); "" when it has none.
func hugePageSize(t *testing.T) string {
	entries, _ := os.ReadDir("/sys/kernel/mm/hugepages")
	for _, e := range entries {
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(e.Name(), "hugepages-"), "kB"), 10, 64)
		if err != nil {
			continue
		}
		switch {
		case kb >= 1<<20 && kb%(1<<20) == 0:
			return strconv.FormatUint(kb>>20, 10) + "GB"
		case kb >= 1<<10 && kb%(1<<10) == 0:
			return strconv.FormatUint(kb>>10, 10) + "MB"
		default:
			return strconv.FormatUint(kb, 10) + "KB"
		}
	}
	return ""
}

// hugepageLimits and network are applied where their controllers are (v1
// hugetlb, net_cls, net_prio; v2 hugetlb) and refused, naming what is
// missing, where they are not: never dropped. A page size that is not one
// never reaches a file name.
func TestRealHugetlbAndNetwork(t *testing.T) {
	m, l := realManager(t, "")
	h := startHelper(t, "cmd")
	ctx := context.Background()
	size := hugePageSize(t)
	if size == "" {
		testutil.SkipOrFail(t, "this machine has no huge page sizes (/sys/kernel/mm/hugepages)")
	}
	if err := m.Apply(ctx, h.pid(), &specs.LinuxResources{}); err != nil {
		t.Fatal(err)
	}
	v2Has := func(c string) bool {
		data, _ := os.ReadFile(filepath.Join(l.Unified, "cgroup.controllers"))
		return slices.Contains(strings.Fields(string(data)), c)
	}
	hl := &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: size, Limit: 8 << 20}}}
	err := m.Set(ctx, hl)
	switch {
	case l.Mode() != ModeUnified && l.V1["hugetlb"] != "":
		if err != nil {
			t.Fatalf("hugepageLimits with hugetlb mounted: %v", err)
		}
		if got := readBack(t, m, "hugetlb", "hugetlb."+size+".limit_in_bytes"); got != strconv.Itoa(8<<20) {
			t.Errorf("hugetlb.%s.limit_in_bytes = %s, want %d", size, got, 8<<20)
		}
	case l.Mode() == ModeUnified && v2Has("hugetlb"):
		if err != nil {
			t.Fatalf("hugepageLimits on cgroup v2 with hugetlb: %v", err)
		}
		if got := readBack(t, m, "", "hugetlb."+size+".max"); got != strconv.Itoa(8<<20) {
			t.Errorf("hugetlb.%s.max = %s, want %d", size, got, 8<<20)
		}
	default:
		if err == nil || !strings.Contains(err.Error(), "hugepageLimits") || !strings.Contains(err.Error(), "hugetlb") {
			t.Errorf("hugepageLimits without a hugetlb controller: %v, want an error naming it", err)
		}
	}
	if err := m.Set(ctx, &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "../2MB", Limit: 1}}}); err == nil || !strings.Contains(err.Error(), "not a huge page size") {
		t.Errorf("page size ../2MB: %v, want it refused", err)
	}

	classID := uint32(0x100001)
	nw := &specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: &classID, Priorities: []specs.LinuxInterfacePriority{{Name: "lo", Priority: 5}}}}
	err = m.Set(ctx, nw)
	switch {
	case l.Mode() == ModeUnified:
		if err == nil || !strings.Contains(err.Error(), "cgroup v2 does not have") {
			t.Errorf("network on cgroup v2: %v, want it refused", err)
		}
	case l.V1["net_cls"] != "" && l.V1["net_prio"] != "":
		if err != nil {
			t.Fatalf("network with net_cls and net_prio mounted: %v", err)
		}
		if got := readBack(t, m, "net_cls", "net_cls.classid"); got != strconv.Itoa(int(classID)) {
			t.Errorf("net_cls.classid = %s, want %d", got, classID)
		}
		if got := readBack(t, m, "net_prio", "net_prio.ifpriomap"); !strings.Contains(got, "lo 5") {
			t.Errorf("net_prio.ifpriomap = %q, want lo 5", got)
		}
	default:
		if err == nil || !strings.Contains(err.Error(), "linux.resources.network") || !strings.Contains(err.Error(), "not mounted") {
			t.Errorf("network without net_cls/net_prio mounted: %v, want an error naming them", err)
		}
	}
}

// On the hybrid layout MakeUnified makes the cgroup2 directory alone, a
// process there stays through a failed Apply (which removes the v1
// directories it made) and Destroy removes everything; a process cloned
// in early ends up in every hierarchy after Apply and ApplyCloned.
// Elsewhere it makes nothing.
func TestRealMakeUnified(t *testing.T) {
	m, l := realManager(t, "")
	ctx := context.Background()
	et, ok := m.(EarlyCloneTarget)
	if !ok {
		t.Fatalf("the cgroupfs manager %T is not an EarlyCloneTarget", m)
	}
	paths := m.Paths()
	early, err := et.MakeUnified()
	if err != nil {
		t.Fatal(err)
	}
	if l.Mode() != ModeHybrid {
		if early {
			t.Errorf("MakeUnified on the %v layout = true, want false", l.Mode())
		}
		for key, dir := range paths {
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("MakeUnified on the %v layout made hierarchy %q: %s (%v)", l.Mode(), key, dir, err)
			}
		}
		return
	}
	if !early {
		t.Fatal("MakeUnified on the hybrid layout = false, want true")
	}
	for key, dir := range paths {
		_, err := os.Stat(dir)
		if key == "" && err != nil {
			t.Errorf("the cgroup2 directory %s: %v, want made", dir, err)
		}
		if key != "" && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("hierarchy %q: %s (%v), want not made yet", key, dir, err)
		}
	}
	h := startHelper(t, "cmd")
	// What CLONE_INTO_CGROUP would do, as a move.
	if err := os.WriteFile(filepath.Join(paths[""], "cgroup.procs"), []byte(strconv.Itoa(h.pid())), 0); err != nil {
		t.Fatal(err)
	}
	bad := &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "100000"}}
	if err := m.Apply(ctx, 0, bad); err == nil {
		t.Fatal("Apply with cpuset.cpus 100000 succeeded")
	} else if strings.Contains(err.Error(), "cleaning up") {
		t.Errorf("Apply: %v, want no cleanup error (the busy cgroup2 directory is Destroy's)", err)
	}
	if _, err := os.Stat(paths[""]); err != nil {
		t.Errorf("after a failed Apply the cgroup2 directory with the process in it: %v", err)
	}
	if _, err := os.Stat(paths["memory"]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after a failed Apply the memory cgroup %s is left (%v)", paths["memory"], err)
	}
	if err := m.Apply(ctx, 0, &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr[int64](7)}}); err != nil {
		t.Fatal(err)
	}
	if err := et.ApplyCloned(ctx, h.pid()); err != nil {
		t.Fatal(err)
	}
	got, err := proc.Cgroups(h.pid())
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimPrefix(paths[""], l.Unified) // the same path in every hierarchy
	for key, cg := range got {
		if cg != want {
			t.Errorf("hierarchy %q: the process is in %q, want %q", key, cg, want)
		}
	}
	if v := readBack(t, m, "pids", "pids.max"); v != "7" {
		t.Errorf("pids.max = %q, want 7", v)
	}
	syscall.Kill(h.pid(), syscall.SIGKILL)
	h.wait()
}

// On a v1 cpuset hierarchy the directories a manager makes above its
// cgroup get cgroup.clone_children (which the kernel hands down to the
// children it makes), so that each later child gets its parent's CPUs and
// nodes as it is made (no write of cpuset.cpus, which rebuilds the
// scheduler's domains); the cgroups still get their CPUs.
func TestRealCpusetCloneChildren(t *testing.T) {
	testutil.RequireRoot(t)
	id := testutil.Name(t, 60)
	m, l := realManager(t, "/"+id+"/a/b")
	mount := l.V1["cpuset"]
	if mount == "" {
		t.Skip("no v1 cpuset hierarchy (cgroup v2: cpuset.cpus may stay empty there)")
	}
	ctx := context.Background()
	if err := m.Apply(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	d, err := NewCgroupfsAt(l)
	if err != nil {
		t.Fatal(err)
	}
	sibling, err := d.Manager(id+"-c", "/"+id+"/a/c")
	if err != nil {
		t.Fatal(err)
	}
	// Removed before m's cleanup checks that nothing of the test is left.
	t.Cleanup(func() {
		if err := sibling.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	if err := sibling.Apply(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	read := func(dir, file string) string {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	for _, dir := range []string{filepath.Join(mount, id), filepath.Join(mount, id, "a")} {
		if got := read(dir, "cgroup.clone_children"); got != "1" {
			t.Errorf("%s: cgroup.clone_children %q, want 1", dir, got)
		}
	}
	root := read(mount, "cpuset.cpus")
	for _, mm := range []Manager{m, sibling} {
		dir := mm.Paths()["cpuset"]
		if got := read(dir, "cpuset.cpus"); got != root {
			t.Errorf("%s: cpuset.cpus %q, want the root's %q", dir, got, root)
		}
		if got := read(dir, "cpuset.mems"); got == "" {
			t.Errorf("%s: cpuset.mems empty", dir)
		}
	}
}
