package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
)

// cgroupValue reads a cgroup file of the container, v1 controller first,
// else the unified hierarchy's file.
func cgroupValue(t *testing.T, st executor.State, ctrl, v1File, v2File string) string {
	t.Helper()
	path := ""
	if dir, ok := st.CgroupPaths[ctrl]; ok {
		path = filepath.Join(dir, v1File)
	} else if dir, ok := st.CgroupPaths[""]; ok {
		path = filepath.Join(dir, v2File)
	} else {
		t.Fatalf("no %s cgroup in %v", ctrl, st.CgroupPaths)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// runtime update changes limits of a running container in place: same
// PID, new values in the cgroup files, only the values given change, and
// the device rules are kept (/dev/null still works).
func TestRuntimeUpdate(t *testing.T) {
	r := newOpsRT(t)
	mem, pids := int64(64<<20), int64(100)
	id, st, _ := r.started(func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{
			Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			Memory:  &specs.LinuxMemory{Limit: &mem},
			Pids:    &specs.LinuxPids{Limit: &pids},
		}
	}, "sleep", "1000")

	r.ok("update", "--memory", strconv.Itoa(128<<20), "--pids-limit", "50", id)
	if got := cgroupValue(t, st, "memory", "memory.limit_in_bytes", "memory.max"); got != strconv.Itoa(128<<20) {
		t.Errorf("memory limit after update: %s", got)
	}
	if got := cgroupValue(t, st, "pids", "pids.max", "pids.max"); got != "50" {
		t.Errorf("pids limit after update: %s", got)
	}

	res := filepath.Join(t.TempDir(), "resources.json")
	if err := os.WriteFile(res, []byte(`{"pids": {"limit": 70}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r.ok("update", "-r", res, id)
	if got := cgroupValue(t, st, "pids", "pids.max", "pids.max"); got != "70" {
		t.Errorf("pids limit after update -r: %s", got)
	}
	if got := cgroupValue(t, st, "memory", "memory.limit_in_bytes", "memory.max"); got != strconv.Itoa(128<<20) {
		t.Errorf("update -r of pids alone changed the memory limit to %s", got)
	}

	if now := r.state(id); now.Pid != st.Pid || now.Status != executor.StatusRunning {
		t.Fatalf("update restarted the container: %+v", now)
	}
	if out := r.cmdOK("exec", id, "--", "sh", "-c", "echo x > /dev/null && echo null-ok"); !strings.Contains(out, "null-ok") {
		t.Errorf("/dev/null after update: %q", out)
	}

	r.ok("kill", id, "KILL")
	waitState(t, r.rt, id, executor.StatusStopped)
	if res := r.run("update", "--memory", strconv.Itoa(32<<20), id); res.code == 0 {
		t.Errorf("update of a stopped container succeeded")
	}
}

// An update that names no device rules (`update --pids-limit`) leaves the
// container's own: a device the spec allows stays usable.
func TestUpdateKeepsSpecDeviceRules(t *testing.T) {
	r := newOpsRT(t)
	id, _, _ := r.started(func(s *specs.Spec) {
		denyAllDevices(s)
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: true, Type: "b", Major: ptrTo[int64](7), Minor: ptrTo[int64](0), Access: "r",
		})
	}, "sh", "-c", "mknod /dev/loop0 b 7 0 && sleep 1000")
	probe := `head -c 1 /dev/loop0 >/dev/null 2>/tmp/err; cat /tmp/err; echo probed`
	if out := r.cmdOK("exec", id, "--", "sh", "-c", probe); strings.Contains(out, "not permitted") || !strings.Contains(out, "probed") {
		t.Fatalf("loop0 before the update: %q", out)
	}
	r.ok("update", "--pids-limit", "50", id)
	if out := r.cmdOK("exec", id, "--", "sh", "-c", probe); strings.Contains(out, "not permitted") || !strings.Contains(out, "probed") {
		t.Errorf("loop0 after an update without device rules: %q", out)
	}
	r.ok("kill", id, "KILL")
}
