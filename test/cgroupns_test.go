package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A container in its own cgroup namespace with /sys/fs/cgroup mounted
// sees its own cgroup as the root: /proc/self/cgroup says "/" in every
// hierarchy and the mounted files are its cgroup's (its memory limit).
// The init sets up its mounts while the creator is still moving it into
// its cgroup; this shows the cgroup mount and the namespace wait for it.
func TestCgroupNamespaceAndMount(t *testing.T) {
	r := newRT(t)
	limit := int64(48 << 20)
	b := bundle(t, func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}})
	}, "sh", "-c", "cat /proc/self/cgroup; echo ---; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
	r.cleanup("cgns")
	res := r.run("run", "--bundle", b, "cgns")
	if res.code != 0 {
		t.Fatalf("run: exit %d: %s%s", res.code, res.stdout, res.stderr)
	}
	own, limits, _ := strings.Cut(res.stdout, "---\n")
	for _, line := range strings.Split(strings.TrimSpace(own), "\n") {
		// hierarchy-ID:controllers:path
		if parts := strings.SplitN(line, ":", 3); len(parts) != 3 || parts[2] != "/" {
			t.Errorf("/proc/self/cgroup in the container: %q, want every path /", line)
		}
	}
	if got := strings.TrimSpace(limits); got != strconv.FormatInt(limit, 10) {
		t.Errorf("memory limit read from the container's /sys/fs/cgroup: %q, want %d", got, limit)
	}
}

// A create whose init fails in its setup (a bind mount of a missing
// source) while the creator is still placing it in its cgroup reports the
// init's error and leaves no state and no cgroup behind.
func TestSetupFailureWhilePlacing(t *testing.T) {
	r := newRT(t)
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	limit := int64(32 << 20)
	b := bundle(t, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: missing, Options: []string{"rbind"}})
	}, "true")
	r.cleanup("setupfail")
	res := r.run("create", "--bundle", b, "setupfail")
	if res.code == 0 {
		t.Fatal("create with a missing bind source succeeded")
	}
	if !strings.Contains(res.stderr, missing) {
		t.Errorf("error does not name the missing source %s: %s", missing, res.stderr)
	}
	if _, err := os.Stat(filepath.Join(r.root, "setupfail")); !os.IsNotExist(err) {
		t.Errorf("state directory left after the failed create: %v", err)
	}
	for _, h := range []string{"memory", "pids", "cpu", "unified"} {
		if matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", h, "reconciled", "setupfail")); len(matches) > 0 {
			t.Errorf("cgroup left after the failed create: %v", matches)
		}
	}
}
