package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/testutil"
)

// denyAllDevices is what every engine (and desired/) puts in a spec: deny
// all, then the runtime's defaults must let /dev/null and friends through.
func denyAllDevices(s *specs.Spec) {
	s.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	for _, set := range []*[]string{&s.Process.Capabilities.Bounding, &s.Process.Capabilities.Effective, &s.Process.Capabilities.Permitted} {
		*set = append(*set, "CAP_MKNOD")
	}
}

// The default devices work under a deny-all rule, and a device the spec
// does not allow stays closed even when the container can mknod it.
const deviceScript = `echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c; ` +
	`mknod /dev/loop0 b 7 0 && head -c 1 /dev/loop0 >/dev/null 2>&1; echo "loop0 exit $?"`

func checkDeviceOutput(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, "null-ok") {
		t.Errorf("/dev/null is not writable inside the container:\n%s", out)
	}
	if !strings.Contains(out, "4\n") {
		t.Errorf("/dev/zero is not readable inside the container:\n%s", out)
	}
	if !strings.Contains(out, "loop0 exit 1") {
		t.Errorf("a block device the spec does not allow could be opened:\n%s", out)
	}
}

func TestDefaultDevicesAllowed(t *testing.T) {
	r := newRT(t)
	res := r.runContainer("devices", denyAllDevices, "sh", "-c", deviceScript)
	if res.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	checkDeviceOutput(t, res.stdout)
}

// An in-place update of the resources (what the daemon does when only
// resources changed) completes the device rules as create does.
func TestUpdateKeepsDefaultDevices(t *testing.T) {
	r := newRT(t)
	b := bundle(t, denyAllDevices, "sh", "-c", deviceScript)
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	r.cleanup("upd")
	cmd := exec.Command(r.bin, "runtime", "--root", r.root, "create", "--bundle", b, "upd")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(out.Name())
		t.Fatalf("create: %v\n%s", err, data)
	}
	api, err := executor.New(r.root)
	if err != nil {
		t.Fatal(err)
	}
	limit := int64(128 << 20)
	upd := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		Memory:  &specs.LinuxMemory{Limit: &limit},
	}
	if err := api.Update(context.Background(), "upd", upd); err != nil {
		t.Fatalf("update: %v", err)
	}
	r.ok("start", "upd")
	waitState(t, r, "upd", executor.StatusStopped)
	data, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	checkDeviceOutput(t, string(data))
}

// The nodes of linux.devices get no cgroup rule of their own (issue 18):
// under an explicit deny-all, /dev/kmsg made by the spec stays closed, and
// a fifo among them is created without a rule (the kernel knows no device
// type p).
func TestSpecDevicesNotAllowedByThemselves(t *testing.T) {
	r := newRT(t)
	mode := os.FileMode(0o666)
	res := r.runContainer("specdev", func(s *specs.Spec) {
		denyAllDevices(s)
		s.Linux.Devices = []specs.LinuxDevice{
			{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11, FileMode: &mode},
			{Path: "/dev/testfifo", Type: "p", FileMode: &mode},
		}
	}, "sh", "-c", `test -p /dev/testfifo && echo fifo-ok; echo reconciled-test > /dev/kmsg; echo "kmsg exit $?"`)
	if res.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "fifo-ok") {
		t.Errorf("the fifo of linux.devices is missing:\n%s", res.stdout)
	}
	if !strings.Contains(res.stdout, "kmsg exit 1") || !strings.Contains(res.stderr, "Operation not permitted") {
		t.Errorf("/dev/kmsg was writable under a deny-all rule:\n%s\n%s", res.stdout, res.stderr)
	}
}

// The cgroup v2 path against the real kernel on any host with a cgroup2
// mount: the runtime in process with the cgroupfs driver's unified code
// pointed at that mount (what runs on a pure v2 host; on a hybrid host the
// mount has no controllers, and the container's v1 devices cgroup is the
// root's, which allows all), so the eBPF device program is all that
// enforces the rules. A created container gets the defaults and nothing
// else; an update before start replaces the program (loop0 opens, which
// the first program denied), and a later one without device rules leaves
// it.
func TestDevicesOnCgroup2Program(t *testing.T) {
	testutil.RequireRoot(t)
	l, err := cgroups.DetectLayout()
	if err != nil || l.Unified == "" {
		testutil.SkipOrFail(t, "no cgroup2 hierarchy (%v)", err)
	}
	drv, err := cgroups.NewCgroupfsAt(cgroups.Layout{Unified: l.Unified})
	if err != nil {
		t.Fatal(err)
	}
	api, err := executor.New(filepath.Join(t.TempDir(), "state"), executor.WithCgroups(drv), executor.WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(id string, updates []*specs.LinuxResources, script string) string {
		t.Helper()
		id = fmt.Sprintf("%s-%s-%d", testutil.Name(t, 20), id, os.Getpid())
		b := bundle(t, func(s *specs.Spec) {
			denyAllDevices(s)
			mode := os.FileMode(0o666)
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11, FileMode: &mode}}
		}, "sh", "-c", script)
		out, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		t.Cleanup(func() {
			if err := api.Delete(context.Background(), id, true); err != nil {
				t.Errorf("delete %s: %v", id, err)
			}
		})
		if err := api.Create(ctx, id, b, executor.CreateOptions{Stdout: out, Stderr: out}); err != nil {
			t.Fatal(err)
		}
		st, err := api.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := st.CgroupPaths[""]; !ok || len(st.CgroupPaths) != 1 {
			t.Fatalf("cgroup paths %v, want the cgroup2 one alone", st.CgroupPaths)
		}
		for _, u := range updates {
			if err := api.Update(ctx, id, u); err != nil {
				t.Fatalf("update: %v", err)
			}
		}
		if err := api.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := api.Wait(wctx, id); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(out.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}

	out := run("create", nil, deviceScript+`; echo reconciled-test > /dev/kmsg; echo "kmsg exit $?"`)
	checkDeviceOutput(t, out)
	if !strings.Contains(out, "kmsg exit 1") {
		t.Errorf("/dev/kmsg was writable under a deny-all rule:\n%s", out)
	}

	upd := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "b", Major: ptrTo[int64](7), Minor: ptrTo[int64](0), Access: "r"},
	}}
	// The second update names no device rules: it leaves them.
	out = run("update", []*specs.LinuxResources{upd, {}}, `echo x > /dev/null && echo null-ok; mknod /dev/loop0 b 7 0 && head -c 1 /dev/loop0 >/dev/null; echo "loop0 exit $?"`)
	if !strings.Contains(out, "null-ok") {
		t.Errorf("/dev/null after the update:\n%s", out)
	}
	if !strings.Contains(out, "loop0 exit") || strings.Contains(out, "not permitted") {
		t.Errorf("after the updates loop0 should open (the first replaced the device program, the second named no device rules):\n%s", out)
	}
}

func ptrTo[T any](v T) *T { return &v }

// Access letters beyond r, w and m are ignored, as runc ignores them: its
// own update.bats denies /dev/kmsg with "rwa". The container runs, updates
// keep the rules, and /dev/kmsg stays closed while /dev/null works.
func TestRuncDeviceAccessLettersAsRunc(t *testing.T) {
	c := newRuncCLI(t)
	mode := os.FileMode(0o666)
	b := bundle(t, func(s *specs.Spec) {
		denyAllDevices(s)
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices,
			specs.LinuxDeviceCgroup{Allow: false, Type: "c", Major: ptrTo[int64](1), Minor: ptrTo[int64](11), Access: "rwa"})
		s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11, FileMode: &mode}}
	}, "sleep", "300")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(b, "run", "-d", id)
	for i := 0; i < 3; i++ {
		c.ok("/", "update", "--pids-limit", "30", id)
	}
	out := c.ok("/", "exec", id, "sh", "-c", `echo reconciled-test > /dev/kmsg 2>/dev/null; echo "kmsg exit $?"; echo x > /dev/null && echo null-ok`)
	if out != "kmsg exit 1\nnull-ok\n" {
		t.Errorf("after updates, /dev/kmsg (denied rwa) and /dev/null: %q; want kmsg closed, null open", out)
	}
}
