package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The header names every hierarchy this host mounts, on or off.
func TestFavordynmodsNamesEveryHierarchy(t *testing.T) {
	ms := cgroupMounts()
	if len(ms) == 0 {
		t.Fatal("no cgroup hierarchy mounted under /sys/fs/cgroup: reconciled needs one")
	}
	got := Favordynmods()
	for _, m := range ms {
		name := m.point[strings.LastIndex(m.point, "/")+1:]
		if m.point == "/sys/fs/cgroup" {
			name = "unified"
		}
		if !strings.Contains(got, name) {
			t.Errorf("Favordynmods() = %q, does not name %s (%s)", got, name, m.point)
		}
	}
	t.Log(Describe())
}

// A sandbox that mounts the hierarchies again over /sys/fs/cgroup (as
// test/systemdtest does) shows each once, as it is seen there.
func TestCgroupMountsOverMounted(t *testing.T) {
	info := `30 25 0:26 / /sys/fs/cgroup/cpu rw,nosuid shared:10 - cgroup cgroup rw,cpu
31 25 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:11 - cgroup2 cgroup2 rw
90 80 0:26 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu,favordynmods
91 80 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
92 80 0:40 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
93 80 0:41 / /proc rw - proc proc rw`
	ms := parseCgroupMounts(info)
	var points []string
	for _, m := range ms {
		points = append(points, m.point)
	}
	if got := strings.Join(points, " "); got != "/sys/fs/cgroup/cpu /sys/fs/cgroup/unified /sys/fs/cgroup/memory" {
		t.Fatalf("mounts %q, want cpu, unified and memory once each", got)
	}
	if !ms[0].opts["favordynmods"] {
		t.Errorf("cpu: options %v, want the last mount's (favordynmods)", ms[0].opts)
	}
}

// The header says what a page fault costs, measured: a positive time that
// is not absurd (a first touch of a page takes well under a millisecond on
// any host this runs on).
func TestPageFaultMeasured(t *testing.T) {
	d, err := PageFault()
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 || d > time.Millisecond {
		t.Errorf("PageFault() = %v, want a positive time under 1ms", d)
	}
	if got := Describe(); !strings.Contains(got, "page fault: ") || strings.Contains(got, "not measured") {
		t.Errorf("Describe() = %q, want the measured page fault cost", got)
	}
	t.Logf("page fault: %v", d)
}

// The header says what a system call costs, measured: a positive time
// under a millisecond.
func TestSystemCallMeasured(t *testing.T) {
	if d := SystemCall(); d <= 0 || d > time.Millisecond {
		t.Errorf("SystemCall() = %v, want a positive time under 1ms", d)
	}
	if got := Describe(); !strings.Contains(got, "; system call: ") {
		t.Errorf("Describe() = %q, want the measured system call cost", got)
	}
}

// DAMON names each kdamond that runs, with what its schemes do and their
// CPU quota, and the DAMON modules that are enabled; a stopped kdamond
// does not count. The tree is a fake sysfs (the host's own DAMON settings
// are not ours to change); the real one is read below.
func TestDAMON(t *testing.T) {
	sys := t.TempDir()
	put := func(rel, v string) {
		t.Helper()
		p := filepath.Join(sys, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := DAMON(sys); got != "off" {
		t.Errorf("DAMON() without DAMON = %q, want off", got)
	}
	k := "kernel/mm/damon/admin/kdamonds/"
	put(k+"nr_kdamonds", "2")
	put(k+"0/state", "on")
	put(k+"0/contexts/0/operations", "paddr")
	put(k+"0/contexts/0/schemes/0/action", "pageout")
	put(k+"0/contexts/0/schemes/0/quotas/ms", "50")
	put(k+"0/contexts/0/schemes/0/quotas/reset_interval_ms", "1000")
	put(k+"1/state", "off")
	put(k+"1/contexts/0/operations", "vaddr")
	put("module/damon_reclaim/parameters/enabled", "N")
	put("module/damon_stat/parameters/enabled", "Y")
	want := "ON: kdamond 0 (paddr: pageout up to 50 ms of CPU per 1000 ms), damon_stat"
	if got := DAMON(sys); got != want {
		t.Errorf("DAMON() = %q, want %q", got, want)
	}
	t.Logf("this host: DAMON: %s", DAMON("/sys"))
	if got := Describe(); !strings.Contains(got, "; DAMON: ") {
		t.Errorf("Describe() = %q, does not say whether DAMON runs", got)
	}
}

// BusyTime adds what the CPUs did but idle and wait for I/O, in ticks of
// 10 ms, and grows while a CPU works.
func TestBusyTime(t *testing.T) {
	got, err := parseBusy("cpu  100 2 30 5000 70 4 5 6 8 9\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := (100 + 2 + 30 + 4 + 5 + 6) * 10 * time.Millisecond; got != want {
		t.Errorf("parseBusy = %s, want %s", got, want)
	}
	if _, err := parseBusy("intr 1 2 3\n"); err == nil {
		t.Error("parseBusy accepted a /proc/stat without its cpu line")
	}
	before, err := BusyTime()
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := BusyTime()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 50*time.Millisecond {
		t.Errorf("100 ms of spinning made the CPUs busy for %s more", after-before)
	}
}
