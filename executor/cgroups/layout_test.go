package cgroups

import (
	"reflect"
	"strings"
	"testing"
)

const mountinfoLegacy = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
28 26 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
29 26 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
30 26 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids
31 26 0:29 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,net_cls,net_prio
99 22 0:27 / /mnt/other\040memory rw,relatime shared:11 - cgroup cgroup rw,memory
`

// The host this package was written on: cpu and cpuacct apart.
const mountinfoHybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const mountinfoUnified = `24 1 0:22 / / rw shared:1 - overlay overlay rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
77 24 0:30 / /var/lib/x/rootfs/sys/fs/cgroup rw,relatime shared:9 - cgroup2 cgroup2 rw
`

// A unified host with a named v1 hierarchy mounted for old tools.
const mountinfoUnifiedNamed = mountinfoUnified + `80 24 0:40 / /run/cgroup-systemd rw,relatime - cgroup cgroup rw,name=systemd
`

func TestParseMountinfo(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		mode       Mode
		want       Layout
	}{
		{"legacy", mountinfoLegacy, ModeLegacy, Layout{V1: map[string]string{
			"name=systemd": "/sys/fs/cgroup/systemd",
			"cpu":          "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
			"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids",
			"net_cls": "/sys/fs/cgroup/net_cls,net_prio", "net_prio": "/sys/fs/cgroup/net_cls,net_prio",
		}}},
		{"hybrid", mountinfoHybrid, ModeHybrid, Layout{Unified: "/sys/fs/cgroup/unified", V1: map[string]string{
			"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct", "cpuset": "/sys/fs/cgroup/cpuset",
			"memory": "/sys/fs/cgroup/memory", "devices": "/sys/fs/cgroup/devices", "freezer": "/sys/fs/cgroup/freezer",
			"blkio": "/sys/fs/cgroup/blkio", "pids": "/sys/fs/cgroup/pids", "name=systemd": "/sys/fs/cgroup/systemd",
		}}},
		{"unified", mountinfoUnified, ModeUnified, Layout{Unified: "/sys/fs/cgroup", V1: map[string]string{}}},
		{"unified with a named v1 hierarchy", mountinfoUnifiedNamed, ModeUnified, Layout{Unified: "/sys/fs/cgroup", V1: map[string]string{"name=systemd": "/run/cgroup-systemd"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseMountinfo(strings.NewReader(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(l, tc.want) {
				t.Errorf("got %+v\nwant %+v", l, tc.want)
			}
			if l.Mode() != tc.mode {
				t.Errorf("mode %v, want %v", l.Mode(), tc.mode)
			}
		})
	}
}

func TestParseMountinfoErrors(t *testing.T) {
	if _, err := ParseMountinfo(strings.NewReader("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")); err == nil {
		t.Error("no cgroup mount: no error")
	}
	if _, err := ParseMountinfo(strings.NewReader("22 1 8:1 / /sys/fs/cgroup rw cgroup2\n")); err == nil {
		t.Error("malformed line: no error")
	}
}

func TestManagerPaths(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       map[string]string
	}{
		{"legacy", mountinfoLegacy, map[string]string{
			"name=systemd": "/sys/fs/cgroup/systemd/reconciled/c1",
			"cpu":          "/sys/fs/cgroup/cpu,cpuacct/reconciled/c1", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/reconciled/c1",
			"memory": "/sys/fs/cgroup/memory/reconciled/c1", "pids": "/sys/fs/cgroup/pids/reconciled/c1",
			"net_cls": "/sys/fs/cgroup/net_cls,net_prio/reconciled/c1", "net_prio": "/sys/fs/cgroup/net_cls,net_prio/reconciled/c1",
		}},
		{"hybrid", mountinfoHybrid, map[string]string{
			"cpu": "/sys/fs/cgroup/cpu/reconciled/c1", "cpuacct": "/sys/fs/cgroup/cpuacct/reconciled/c1",
			"cpuset": "/sys/fs/cgroup/cpuset/reconciled/c1", "memory": "/sys/fs/cgroup/memory/reconciled/c1",
			"devices": "/sys/fs/cgroup/devices/reconciled/c1", "freezer": "/sys/fs/cgroup/freezer/reconciled/c1",
			"blkio": "/sys/fs/cgroup/blkio/reconciled/c1", "pids": "/sys/fs/cgroup/pids/reconciled/c1",
			"name=systemd": "/sys/fs/cgroup/systemd/reconciled/c1", "": "/sys/fs/cgroup/unified/reconciled/c1",
		}},
		{"unified", mountinfoUnifiedNamed, map[string]string{"": "/sys/fs/cgroup/reconciled/c1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseMountinfo(strings.NewReader(tc.text))
			if err != nil {
				t.Fatal(err)
			}
			d, err := NewCgroupfsAt(l)
			if err != nil {
				t.Fatal(err)
			}
			m, err := d.Manager("c1", "")
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Paths(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Paths() = %v\nwant %v", got, tc.want)
			}
		})
	}
}
