package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/testutil"
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

// update with runc 1.1's flags, in the runc form: each value lands in its
// cgroup file; what this host cannot apply (a realtime runtime beyond the
// parent's, a blkio weight without a weighted I/O scheduler) fails naming
// the flag.
func TestRuncUpdateFlags(t *testing.T) {
	c := newRuncCLI(t)
	b := bundle(t, nil, "sleep", "300")
	id := testutil.Name(t, 40)
	c.cleanup(id)
	c.ok(b, "run", "-d", id)
	stp, err := executor.ReadState(c.root, id)
	if err != nil {
		t.Fatal(err)
	}
	st := *stp
	c.ok("/", "update", "--memory", "64m", "--memory-reservation", "32m", "--memory-swap", "128m",
		"--cpu-share", "512", "--cpu-period", "200000", "--cpu-quota", "50000",
		"--cpuset-cpus", "0", "--cpuset-mems", "0", "--pids-limit", "42", id)
	for _, w := range []struct{ ctrl, v1, v2, want string }{
		{"memory", "memory.limit_in_bytes", "memory.max", strconv.Itoa(64 << 20)},
		{"memory", "memory.soft_limit_in_bytes", "memory.low", strconv.Itoa(32 << 20)},
		{"cpu", "cpu.shares", "cpu.weight", "512"},
		{"cpu", "cpu.cfs_period_us", "", "200000"},
		{"cpu", "cpu.cfs_quota_us", "", "50000"},
		{"cpuset", "cpuset.cpus", "cpuset.cpus", "0"},
		{"cpuset", "cpuset.mems", "cpuset.mems", "0"},
		{"pids", "pids.max", "pids.max", "42"},
	} {
		if w.v2 == "" {
			w.v2 = "cpu.max"
		}
		if _, v1 := st.CgroupPaths[w.ctrl]; !v1 && w.v2 != w.v1 {
			continue // v2 spells these differently; the v1 files are this test's
		}
		if got := cgroupValue(t, st, w.ctrl, w.v1, w.v2); got != w.want {
			t.Errorf("%s after update: %q, want %q", w.v1, got, w.want)
		}
	}
	if dir, ok := st.CgroupPaths["memory"]; ok {
		if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil {
			if got := cgroupValue(t, st, "memory", "memory.memsw.limit_in_bytes", "memory.swap.max"); got != strconv.Itoa(128<<20) {
				t.Errorf("memory.memsw.limit_in_bytes after --memory-swap 128m: %q", got)
			}
		}
	}
	// --cpu-shares (ours) still works beside runc's --cpu-share.
	c.ok("/", "update", "--cpu-shares", "300", id)
	if dir, ok := st.CgroupPaths["cpu"]; ok {
		if got := cgroupValue(t, st, "cpu", "cpu.shares", ""); got != "300" {
			t.Errorf("cpu.shares after --cpu-shares 300: %q", got)
		}
		if _, err := os.Stat(filepath.Join(dir, "cpu.rt_period_us")); err == nil {
			c.ok("/", "update", "--cpu-rt-period", "500000", id)
			if got := cgroupValue(t, st, "cpu", "cpu.rt_period_us", ""); got != "500000" {
				t.Errorf("cpu.rt_period_us after --cpu-rt-period 500000: %q", got)
			}
			parent, _ := os.ReadFile(filepath.Join(filepath.Dir(dir), "cpu.rt_runtime_us"))
			if strings.TrimSpace(string(parent)) == "0" {
				res := c.runIn("/", "update", "--cpu-rt-runtime", "1000", id)
				if res.code == 0 || !strings.Contains(res.stderr, "--cpu-rt-runtime 1000:") {
					t.Errorf("--cpu-rt-runtime beyond the parent's budget: exit %d, %q; want an error naming the flag", res.code, res.stderr)
				}
			}
		}
	}
	if dir, ok := st.CgroupPaths["blkio"]; ok {
		_, e1 := os.Stat(filepath.Join(dir, "blkio.weight"))
		_, e2 := os.Stat(filepath.Join(dir, "blkio.bfq.weight"))
		res := c.runIn("/", "update", "--blkio-weight", "500", id)
		switch {
		case e1 == nil:
			if got := cgroupValue(t, st, "blkio", "blkio.weight", ""); res.code != 0 || got != "500" {
				t.Errorf("--blkio-weight 500: exit %d, %q, blkio.weight %q", res.code, res.stderr, got)
			}
		case e2 == nil:
			if got := cgroupValue(t, st, "blkio", "blkio.bfq.weight", ""); res.code != 0 || got != "500" {
				t.Errorf("--blkio-weight 500: exit %d, %q, blkio.bfq.weight %q", res.code, res.stderr, got)
			}
		case res.code == 0 || !strings.Contains(res.stderr, "--blkio-weight 500:"):
			t.Errorf("--blkio-weight without a weight file: exit %d, %q; want an error naming the flag", res.code, res.stderr)
		}
	}
	if res := c.runIn("/", "update", "--blkio-weight", "5", id); res.code == 0 || !strings.Contains(res.stderr, "--blkio-weight 5: give a weight from 10 to 1000") {
		t.Errorf("--blkio-weight 5: exit %d, %q", res.code, res.stderr)
	}
	if res := c.runIn("/", "update", "--memory", "lots", id); res.code == 0 || !strings.Contains(res.stderr, "memory") {
		t.Errorf("--memory lots: exit %d, %q", res.code, res.stderr)
	}
	if got := cgroupValue(t, st, "pids", "pids.max", "pids.max"); got != "42" {
		t.Errorf("a failed update changed pids.max to %s", got)
	}
}
