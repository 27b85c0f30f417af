package cgroups

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil"
)

// attachedDevicePrograms lists the device programs attached to m's cgroup2
// directory.
func attachedDevicePrograms(t *testing.T, m Manager) []uint32 {
	t.Helper()
	dir := m.Paths()[""]
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ids, _, err := queryDevicePrograms(fd)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// The device rules on cgroup v2, against the real kernel: the fs driver's
// unified code (what runs on a pure v2 host) pointed at the host's cgroup2
// mount, which on a hybrid host has no controllers; device programs work
// there all the same, and the v1 devices cgroup of the helper allows all.
// A helper process in the cgroup opens device nodes made in a temporary
// directory; the kernel refuses with EPERM what the rules deny. Set
// replaces the program: the old rules stop, the new ones hold, and one
// program is left attached.
func TestRealV2Devices(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	l, err := DetectLayout()
	if err != nil || l.Unified == "" {
		testutil.SkipOrFail(t, "no cgroup2 hierarchy (%v)", err)
	}
	m := realManagerAt(t, Layout{Unified: l.Unified}, fmt.Sprintf("%s/%s-%d", DefaultParent, testutil.Name(t, 40), os.Getpid()))
	dir := t.TempDir()
	node := func(name string, mode uint32, major, minor uint32) string {
		p := filepath.Join(dir, name)
		if err := unix.Mknod(p, mode|0o666, int(unix.Mkdev(major, minor))); err != nil {
			t.Fatal(err)
		}
		return p
	}
	null := node("null", unix.S_IFCHR, 1, 3)
	zero := node("zero", unix.S_IFCHR, 1, 5)
	kmsg := node("kmsg", unix.S_IFCHR, 1, 11)
	loop := node("loop0", unix.S_IFBLK, 7, 0)
	h := startHelper(t, "cmd")
	const eperm = "operation not permitted"
	expect := func(when string, cmds map[string]bool) {
		t.Helper()
		for cmd, allowed := range cmds {
			got := h.ask(cmd)
			if denied := strings.Contains(got, eperm); denied == allowed {
				t.Errorf("%s: %s: %q, want allowed=%v", when, cmd, got, allowed)
			}
		}
	}
	ctx := context.Background()
	rules := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
		dev(false, "a", -1, -1, "rwm"),
		dev(true, "c", 1, 3, "rwm"),
		dev(true, "c", 1, 5, "r"),
		dev(true, "b", -1, -1, "m"),
	}}
	if err := m.Apply(ctx, h.pid(), rules); err != nil {
		t.Fatal(err)
	}
	expect("after Apply", map[string]bool{
		"open " + null: true, "openw " + null: true, "open " + zero: true,
		"openw " + zero: false, "open " + kmsg: false, "open " + loop: false,
		"mknod " + filepath.Join(dir, "loop1") + " b 7 1":  true,
		"mknod " + filepath.Join(dir, "kmsg2") + " c 1 11": false,
	})
	first := attachedDevicePrograms(t, m)
	if len(first) != 1 {
		t.Fatalf("after Apply: %d device programs attached (%v), want 1", len(first), first)
	}
	// Another cgroup with the same rules shares the program; a Set with
	// unchanged rules keeps it, alone, and in force.
	drv, err := NewCgroupfsAt(Layout{Unified: l.Unified})
	if err != nil {
		t.Fatal(err)
	}
	// (realManagerAt's check for leftovers named after the test would see
	// m's cgroup when this one's cleanup runs.)
	other, err := drv.Manager("", fmt.Sprintf("%s/%s-%d-other", DefaultParent, testutil.Name(t, 40), os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := other.Destroy(context.Background()); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	if err := other.Apply(ctx, 0, rules); err != nil {
		t.Fatal(err)
	}
	if got := attachedDevicePrograms(t, other); len(got) != 1 || got[0] != first[0] {
		t.Errorf("the same rules on another cgroup: programs %v, want the shared %v", got, first)
	}
	if err := m.Set(ctx, rules); err != nil {
		t.Fatal(err)
	}
	if got := attachedDevicePrograms(t, m); len(got) != 1 || got[0] != first[0] {
		t.Errorf("after a Set with the same rules: programs %v, want %v", got, first)
	}
	expect("after a Set with the same rules", map[string]bool{"open " + null: true, "open " + loop: false})

	err = m.Set(ctx, &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
		dev(false, "a", -1, -1, "rwm"),
		dev(true, "c", 1, 5, "rwm"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	expect("after Set", map[string]bool{
		"open " + null: false, "openw " + null: false,
		"open " + zero: true, "openw " + zero: true, "open " + loop: false,
	})
	second := attachedDevicePrograms(t, m)
	if len(second) != 1 || second[0] == first[0] {
		t.Fatalf("after Set: device programs %v (before: %v), want one new one", second, first)
	}

	// A Set without device rules leaves the program; allow-all opens all.
	if err := m.Set(ctx, &specs.LinuxResources{}); err != nil {
		t.Fatal(err)
	}
	if now := attachedDevicePrograms(t, m); len(now) != 1 || now[0] != second[0] {
		t.Errorf("a Set without device rules changed the programs: %v, want %v", now, second)
	}
	if err := m.Set(ctx, &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{dev(true, "a", -1, -1, "")}}); err != nil {
		t.Fatal(err)
	}
	expect("after allowing all", map[string]bool{
		"open " + null: true, "openw " + zero: true, "open " + kmsg: true, "open " + loop: true,
	})
	if now := attachedDevicePrograms(t, m); len(now) != 1 {
		t.Errorf("after allowing all: %d programs attached", len(now))
	}
}

// Bad rules are refused before anything is attached.
func TestRealV2BadDeviceRule(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	l, err := DetectLayout()
	if err != nil || l.Unified == "" {
		testutil.SkipOrFail(t, "no cgroup2 hierarchy (%v)", err)
	}
	m := realManagerAt(t, Layout{Unified: l.Unified}, fmt.Sprintf("%s/%s-%d", DefaultParent, testutil.Name(t, 40), os.Getpid()))
	err = m.Apply(context.Background(), 0, &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
		dev(false, "a", -1, -1, "rwm"), dev(true, "p", 1, 3, "rwm"),
	}})
	if err == nil || !strings.Contains(err.Error(), `linux.resources.devices[1]: invalid type "p"`) {
		t.Errorf("type p: %v", err)
	}
}

// The kernel's own v1 devices controller is the oracle for the exception
// lists: random rule lists written to a v1 devices cgroup (setDevicesV1)
// leave in devices.list exactly the exceptions compileDeviceRules
// computes, or "a *:* rwm" where it computes allow-all.
func TestDeviceRulesMatchV1Kernel(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	l, err := DetectLayout()
	if err == nil && l.Mode() == ModeUnified {
		// Nothing to compare with; the program is TestRealV2Devices'.
		t.Skip("a unified cgroup v2 host has no v1 devices controller")
	}
	if err != nil || l.V1["devices"] == "" {
		testutil.SkipOrFail(t, "no cgroup v1 devices hierarchy (%v)", err)
	}
	dir := filepath.Join(l.V1["devices"], fmt.Sprintf("%s-%d", testutil.Name(t, 40), os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	rng := rand.New(rand.NewSource(2))
	checked := 0
	for i := 0; i < 400 && checked < 150; i++ {
		rules := randomRules(rng)
		f, err := compileDeviceRules(rules)
		if err != nil {
			continue
		}
		checked++
		if err := setDevicesV1(dir, rules); err != nil {
			t.Fatalf("rules %v: %v", rules, err)
		}
		data, err := os.ReadFile(filepath.Join(dir, "devices.list"))
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(data)), " ", "_"))
		var want []string
		if f.allowAll {
			want = []string{"a_*:*_rwm"}
		}
		for _, e := range f.except {
			want = append(want, strings.ReplaceAll(e.deviceMatch.String()+" "+accessString(e.access), " ", "_"))
		}
		slices.Sort(got)
		slices.Sort(want)
		if f.allowAll && len(f.except) > 0 {
			// devices.list shows no deny exceptions; check the mode only.
			want = []string{"a_*:*_rwm"}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("rules %v: devices.list %v, compiled %v", rules, got, want)
		}
	}
	if checked < 100 {
		t.Errorf("only %d rule lists checked", checked)
	}
}

// BenchmarkSetDevicesV2 is the cost of the device rules on cgroup v2, with
// runc's default rule list under a deny-all, as in the daemon (the program
// loaded once, then shared): "create" on a new cgroup (compile, query,
// attach), "update" with the same rules on one that has the program
// (compile, query). "load" is the first use in a process (the CLI's case):
// the verifier and the JIT.
func BenchmarkSetDevicesV2(b *testing.B) {
	l, err := DetectLayout()
	if os.Geteuid() != 0 || err != nil || l.Unified == "" {
		b.Skip("needs root and a cgroup2 hierarchy")
	}
	newDir := benchCgroups(b, l.Unified)
	rules := runcDefaultDevices()
	b.Run("create", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			d := newDir(b)
			b.StartTimer()
			if err := setDevicesV2(d, rules); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load", func(b *testing.B) {
		f, err := compileDeviceRules(rules)
		if err != nil {
			b.Fatal(err)
		}
		code := encodeProgram(f.program())
		for b.Loop() {
			fd, err := loadDeviceProgram(code)
			if err != nil {
				b.Fatal(err)
			}
			unix.Close(fd)
		}
	})
	b.Run("update", func(b *testing.B) {
		d := newDir(b)
		for b.Loop() {
			if err := setDevicesV2(d, rules); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// runcDefaultDevices is runc's default device rule list under a deny-all,
// as the daemon's containers have it.
func runcDefaultDevices() []specs.LinuxDeviceCgroup {
	return []specs.LinuxDeviceCgroup{
		dev(false, "a", -1, -1, "rwm"),
		dev(true, "c", -1, -1, "m"), dev(true, "b", -1, -1, "m"),
		dev(true, "c", 1, 3, "rwm"), dev(true, "c", 1, 8, "rwm"), dev(true, "c", 1, 7, "rwm"),
		dev(true, "c", 5, 0, "rwm"), dev(true, "c", 1, 5, "rwm"), dev(true, "c", 1, 9, "rwm"),
		dev(true, "c", 5, 1, "rwm"), dev(true, "c", 136, -1, "rwm"), dev(true, "c", 5, 2, "rwm"),
		dev(true, "c", 10, 200, "rwm"),
	}
}

// BenchmarkSetDevicesV1 is the cost of runc's default device rules in a
// fresh v1 devices cgroup, as every create on a v1 or hybrid host pays it.
func BenchmarkSetDevicesV1(b *testing.B) {
	l, err := DetectLayout()
	if os.Geteuid() != 0 || err != nil || l.V1["devices"] == "" {
		b.Skip("needs root and a cgroup v1 devices hierarchy")
	}
	newDir := benchCgroups(b, l.V1["devices"])
	rules := runcDefaultDevices()
	for b.Loop() {
		b.StopTimer()
		d := newDir(b)
		b.StartTimer()
		if err := setDevicesV1(d, rules); err != nil {
			b.Fatal(err)
		}
	}
}

// benchCgroups makes a cgroup of benchmark b's own under mount, removed
// with what is made in it when b ends, and returns newDir, which makes a
// new empty cgroup in it at each call.
func benchCgroups(b *testing.B, mount string) (newDir func(b *testing.B) string) {
	parent := filepath.Join(mount, fmt.Sprintf("%s-%d", strings.ToLower(b.Name()), os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		b.Fatal(err)
	}
	var dirs []string
	b.Cleanup(func() {
		for _, d := range dirs {
			os.Remove(d)
		}
		os.Remove(parent)
	})
	return func(b *testing.B) string {
		d := filepath.Join(parent, strconv.Itoa(len(dirs)))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		dirs = append(dirs, d)
		return d
	}
}
