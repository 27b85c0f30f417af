package cgroups

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeTree is a FAKE cgroup2 mount under t.TempDir(): plain directories and
// files laid out like cgroupfs, for the code that writes limits and parses
// stats. Unlike the kernel, mkdir makes no interface files (the test makes
// the cgroups it needs with mkcg first), a write replaces the file (an
// O_APPEND write adds to it) and nothing reacts to what is written.
type fakeTree struct {
	t    *testing.T
	root string
}

const fakeControllers = "cpuset cpu io memory hugetlb pids rdma misc"

func fakeCgroup2(t *testing.T) *fakeTree {
	t.Helper()
	f := &fakeTree{t: t, root: filepath.Join(t.TempDir(), "cgroup2")}
	f.files("", map[string]string{
		"cgroup.controllers":     fakeControllers + "\n",
		"cgroup.subtree_control": "",
		"cgroup.procs":           "",
		"cpu.stat":               "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
	})
	return f
}

// mkcg makes a non-root cgroup directory with the files the kernel would
// put there when every fake controller is enabled in its parent.
func (f *fakeTree) mkcg(rel string) string {
	f.t.Helper()
	f.files(rel, map[string]string{
		"cgroup.controllers":     fakeControllers + "\n",
		"cgroup.subtree_control": "",
		"cgroup.procs":           "",
		"cgroup.events":          "populated 0\nfrozen 0\n",
		"cgroup.freeze":          "0\n",
		"memory.max":             "max\n",
		"memory.swap.max":        "max\n",
		"memory.low":             "0\n",
		"memory.current":         "0\n",
		"memory.peak":            "0\n",
		"memory.swap.current":    "0\n",
		"memory.events":          "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
		"cpu.weight":             "100\n",
		"cpu.max":                "max 100000\n",
		"cpu.max.burst":          "0\n",
		"cpu.stat":               "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
		"cpuset.cpus":            "\n",
		"cpuset.mems":            "\n",
		"pids.max":               "max\n",
		"pids.current":           "0\n",
	})
	return filepath.Join(f.root, rel)
}

func (f *fakeTree) files(rel string, files map[string]string) {
	f.t.Helper()
	dir := filepath.Join(f.root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fakeTree) read(rel string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.root, rel))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

func (f *fakeTree) manager(id, cgroupsPath string) Manager {
	f.t.Helper()
	d, err := NewCgroupfsAt(Layout{Unified: f.root})
	if err != nil {
		f.t.Fatal(err)
	}
	m, err := d.Manager(id, cgroupsPath)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

func (f *fakeTree) want(files map[string]string) {
	f.t.Helper()
	for rel, want := range files {
		if got := f.read(rel); got != want {
			f.t.Errorf("%s = %q, want %q", rel, got, want)
		}
	}
}

func TestFakeV2Apply(t *testing.T) {
	f := fakeCgroup2(t)
	f.mkcg("reconciled")
	f.mkcg("reconciled/c1")
	m := f.manager("c1", "")
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr[int64](256 << 20), Swap: ptr[int64](384 << 20), Reservation: ptr[int64](64 << 20)},
		CPU:    &specs.LinuxCPU{Shares: ptr[uint64](1024), Quota: ptr[int64](50000), Period: ptr[uint64](100000)},
		Pids:   &specs.LinuxPids{Limit: ptr[int64](64)},
		// Devices need a real cgroup2 (an eBPF program is attached to
		// it): TestRealV2Devices.
	}
	if err := m.Apply(context.Background(), 4242, r); err != nil {
		t.Fatal(err)
	}
	f.want(map[string]string{
		"cgroup.subtree_control":               "+cpu +memory +pids",
		"reconciled/cgroup.subtree_control":    "+cpu +memory +pids",
		"reconciled/c1/cgroup.subtree_control": "",
		"reconciled/c1/memory.max":             "268435456",
		"reconciled/c1/memory.swap.max":        "134217728",
		"reconciled/c1/memory.low":             "67108864",
		"reconciled/c1/cpu.weight":             "39",
		"reconciled/c1/cpu.max":                "50000 100000",
		"reconciled/c1/pids.max":               "64",
		"reconciled/c1/cpuset.cpus":            "\n", // untouched
		"reconciled/c1/cgroup.procs":           "4242",
		"cgroup.procs":                         "",
	})
	for _, name := range []string{"devices.allow", "devices.deny"} {
		if _, err := os.Stat(filepath.Join(f.root, "reconciled/c1", name)); err == nil {
			t.Errorf("%s written on cgroup2", name)
		}
	}
	if got, want := m.Paths(), map[string]string{"": filepath.Join(f.root, "reconciled/c1")}; len(got) != 1 || got[""] != want[""] {
		t.Errorf("Paths() = %v, want %v", got, want)
	}

	// Set: unlimited memory means unlimited swap too; the cpuset needs
	// its controller.
	if err := m.Set(context.Background(), &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr[int64](-1)},
		CPU:    &specs.LinuxCPU{Quota: ptr[int64](-1), Cpus: "0-1", Mems: "0"},
		Pids:   &specs.LinuxPids{Limit: ptr[int64](0)},
	}); err != nil {
		t.Fatal(err)
	}
	f.want(map[string]string{
		"reconciled/cgroup.subtree_control": "+cpu +memory +pids+cpuset",
		"reconciled/c1/memory.max":          "max",
		"reconciled/c1/memory.swap.max":     "max",
		"reconciled/c1/cpu.max":             "max",
		"reconciled/c1/cpu.weight":          "39",
		"reconciled/c1/cpuset.cpus":         "0-1",
		"reconciled/c1/cpuset.mems":         "0",
		"reconciled/c1/pids.max":            "max",
	})
}

// A parent that already has the controllers is left alone, the root
// included; one that lacks some gets only those.
func TestFakeV2ControllersOnlyWhenMissing(t *testing.T) {
	f := fakeCgroup2(t)
	f.files("", map[string]string{"cgroup.subtree_control": "cpuset cpu io memory pids\n"})
	f.mkcg("pods")
	f.files("pods", map[string]string{"cgroup.controllers": "cpu memory\n", "cgroup.subtree_control": "memory\n"})
	f.mkcg("pods/c2")
	m := f.manager("c2", "/pods/c2")
	if err := m.Apply(context.Background(), 7, nil); err != nil {
		t.Fatal(err)
	}
	f.want(map[string]string{
		"cgroup.subtree_control":      "cpuset cpu io memory pids\n",
		"pods/cgroup.subtree_control": "memory\n+cpu", // pids is not available there
		"pods/c2/cgroup.procs":        "7",
	})
}

func TestFakeV2Unified(t *testing.T) {
	f := fakeCgroup2(t)
	f.mkcg("reconciled")
	f.mkcg("reconciled/c1")
	f.files("reconciled/c1", map[string]string{"memory.high": "max\n"})
	m := f.manager("c1", "")
	err := m.Apply(context.Background(), 0, &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: ptr[int64](1 << 30)},
		Unified: map[string]string{"memory.high": "536870912", "memory.max": "900000000"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.want(map[string]string{
		"reconciled/c1/memory.high":  "536870912",
		"reconciled/c1/memory.max":   "900000000", // unified wins
		"reconciled/c1/cgroup.procs": "",          // pid 0: nothing moved
	})
	if err := m.Set(context.Background(), &specs.LinuxResources{Unified: map[string]string{"../x": "1"}}); err == nil {
		t.Error("unified key with a slash: no error")
	}
}

func TestFakeV2Errors(t *testing.T) {
	f := fakeCgroup2(t)
	f.mkcg("reconciled")
	dir := f.mkcg("reconciled/c1")
	m := f.manager("c1", "")

	// No pids controller: the error names the file and the value.
	if err := os.Remove(filepath.Join(dir, "pids.max")); err != nil {
		t.Fatal(err)
	}
	err := m.Set(context.Background(), &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr[int64](64)}})
	if want := `writing "64" to ` + filepath.Join(dir, "pids.max") + ": "; err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Set pids without pids.max: %v, want %q...", err, want)
	}

	// No swap accounting: "max" and "no swap" pass, a swap limit fails.
	if err := os.Remove(filepath.Join(dir, "memory.swap.max")); err != nil {
		t.Fatal(err)
	}
	for _, swap := range []int64{-1, 1 << 20} {
		if err := m.Set(context.Background(), &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](1 << 20), Swap: ptr(swap)}}); err != nil {
			t.Errorf("swap %d without memory.swap.max: %v", swap, err)
		}
	}
	if err := m.Set(context.Background(), &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](1 << 20), Swap: ptr[int64](2 << 20)}}); err == nil || !strings.Contains(err.Error(), "memory.swap.max") {
		t.Errorf("swap limit without memory.swap.max: %v", err)
	}
	if err := m.Set(context.Background(), &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](2 << 20), Swap: ptr[int64](1 << 20)}}); err == nil {
		t.Error("swap below memory: no error")
	}

	// A cgroup that is not there.
	gone := f.manager("nope", "")
	ctx := context.Background()
	if err := gone.Set(ctx, &specs.LinuxResources{}); !errors.Is(err, ErrNotExist) {
		t.Errorf("Set on a missing cgroup: %v", err)
	}
	if _, err := gone.Stats(ctx); !errors.Is(err, ErrNotExist) {
		t.Errorf("Stats on a missing cgroup: %v", err)
	}
	if _, err := gone.Procs(ctx); !errors.Is(err, ErrNotExist) {
		t.Errorf("Procs on a missing cgroup: %v", err)
	}
	if err := gone.Freeze(ctx, true); !errors.Is(err, ErrNotExist) {
		t.Errorf("Freeze on a missing cgroup: %v", err)
	}
	if err := gone.Destroy(ctx); err != nil {
		t.Errorf("Destroy of a missing cgroup: %v", err)
	}
}

// A failed Apply removes the directories it made and only those.
func TestFakeV2ApplyUndo(t *testing.T) {
	f := fakeCgroup2(t)
	f.mkcg("pods")
	m := f.manager("c3", "/pods/a/b/c3")
	// a, b and c3 are made by Apply (empty, no interface files): the
	// memory limit cannot be written.
	err := m.Apply(context.Background(), 1, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](1 << 20)}})
	if err == nil || !strings.Contains(err.Error(), "cgroup.controllers") && !strings.Contains(err.Error(), "memory.max") {
		t.Fatalf("Apply: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.root, "pods/a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pods/a left after a failed Apply: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.root, "pods")); err != nil {
		t.Errorf("pods (not made by Apply) removed: %v", err)
	}
}

func TestFakeV2Stats(t *testing.T) {
	f := fakeCgroup2(t)
	f.mkcg("reconciled")
	f.mkcg("reconciled/c1")
	f.files("reconciled/c1", map[string]string{
		"memory.current":      "10485760\n",
		"memory.max":          "268435456\n",
		"memory.peak":         "20971520\n",
		"memory.swap.current": "4096\n",
		"memory.events":       "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
		"cpu.stat":            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 77\nnr_bursts 0\nburst_usec 0\n",
		"pids.current":        "3\n",
		"pids.max":            "64\n",
	})
	m := f.manager("c1", "")
	st, err := m.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		MemoryUsage: 10 << 20, MemoryLimit: 256 << 20, MemoryMaxUsed: 20 << 20, SwapUsage: 4096,
		OOMKills: 1, CPUUsageNanos: 1500000, CPUUserNanos: 1000000, CPUSysNanos: 500000,
		PidsCurrent: 3, PidsLimit: 64,
	}
	if *st != want {
		t.Errorf("Stats() = %+v\nwant %+v", *st, want)
	}

	// Unlimited, and the files of controllers that are not enabled.
	dir := filepath.Join(f.root, "reconciled/c1")
	for _, name := range []string{"memory.peak", "memory.swap.current", "pids.current", "pids.max"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	f.files("reconciled/c1", map[string]string{"memory.max": "max\n"})
	st, err = m.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want = Stats{MemoryUsage: 10 << 20, OOMKills: 1, CPUUsageNanos: 1500000, CPUUserNanos: 1000000, CPUSysNanos: 500000}
	if *st != want {
		t.Errorf("Stats() = %+v\nwant %+v", *st, want)
	}

	f.files("reconciled/c1", map[string]string{"memory.events": "oom_kill lots\n"})
	if _, err := m.Stats(context.Background()); err == nil || !strings.Contains(err.Error(), "memory.events") {
		t.Errorf("garbled memory.events: %v", err)
	}

	f.files("reconciled/c1", map[string]string{"cgroup.procs": "12\n345\n"})
	pids, err := m.Procs(context.Background())
	if err != nil || len(pids) != 2 || pids[0] != 12 || pids[1] != 345 {
		t.Errorf("Procs() = %v, %v", pids, err)
	}
}

func TestFakeV2Freeze(t *testing.T) {
	f := fakeCgroup2(t)
	f.mkcg("reconciled")
	f.mkcg("reconciled/c1")
	m := f.manager("c1", "")

	// The fake kernel never reports frozen: Freeze gives up with ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := m.Freeze(ctx, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Freeze that never completes: %v", err)
	}
	f.want(map[string]string{"reconciled/c1/cgroup.freeze": "1"})

	// It reports frozen a little later.
	go func() {
		time.Sleep(20 * time.Millisecond)
		os.WriteFile(filepath.Join(f.root, "reconciled/c1/cgroup.events"), []byte("populated 1\nfrozen 1\n"), 0o644)
	}()
	if err := m.Freeze(context.Background(), true); err != nil {
		t.Errorf("Freeze: %v", err)
	}
	f.files("reconciled/c1", map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	if err := m.Freeze(context.Background(), false); err != nil {
		t.Errorf("thaw: %v", err)
	}
	f.want(map[string]string{"reconciled/c1/cgroup.freeze": "0"})
}
