package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
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
