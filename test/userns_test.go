package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/testutil"
)

// TestRuncRootlessSpecRuns: `runtime spec --rootless` (runc's shape: a user
// namespace, /sys bound from the host, devpts without gid=) with root
// mapped to an unused host range and runc's own read-only cgroup mount
// added back runs under `runtime run`: root inside, the mapping in
// /proc/self/uid_map, the rootfs idmapped.
func TestRuncRootlessSpecRuns(t *testing.T) {
	c := newRuncCLI(t)
	rootfs := testutil.BusyboxRootfs(t)
	dir := filepath.Dir(rootfs)
	os.Remove(filepath.Join(dir, "config.json"))
	c.ok(dir, "spec", "--rootless")
	s := readSpec(t, dir)
	base := uint32(200000 + (os.Getpid()%4096)*65536)
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: base, Size: 65536}}
	s.Linux.UIDMappings, s.Linux.GIDMappings = m, m
	s.Process.Terminal = false
	s.Process.Args = []string{"sh", "-c", "id -u; cat /proc/self/uid_map; stat -c %u /bin/busybox; ls /sys/fs/cgroup >/dev/null && echo cgroup-ok"}
	s.Annotations = map[string]string{"dev.reconciled.idmap-root": "true"}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
		Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}})
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	id := testutil.Name(t, 40)
	c.cleanup(id)
	res := c.runIn(dir, "run", id)
	want := fmt.Sprintf("0\n0 %d 65536\n0\ncgroup-ok", base)
	if res.code != 0 || strings.Join(strings.Fields(res.stdout), " ") != strings.Join(strings.Fields(want), " ") {
		t.Errorf("run: exit %d\nstdout: %q\nstderr: %s\nwant stdout %q", res.code, res.stdout, res.stderr, want)
	}
}
