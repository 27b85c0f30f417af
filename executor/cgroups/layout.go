package cgroups

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"reconciled.dev/reconciled/internal/proc"
)

// Mode is how a host's cgroup hierarchies are laid out.
type Mode int

const (
	// ModeLegacy is cgroup v1 alone: one hierarchy per controller (or per
	// group of co-mounted controllers).
	ModeLegacy Mode = iota + 1
	// ModeHybrid is cgroup v1 controllers plus a cgroup2 hierarchy with no
	// controllers (usually at /sys/fs/cgroup/unified), which systemd uses
	// to track processes.
	ModeHybrid
	// ModeUnified is cgroup v2 alone.
	ModeUnified
)

func (m Mode) String() string {
	switch m {
	case ModeLegacy:
		return "legacy"
	case ModeHybrid:
		return "hybrid"
	case ModeUnified:
		return "unified"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Layout says where the cgroup hierarchies are mounted.
type Layout struct {
	// Unified is the cgroup2 mount point; "" when there is none.
	Unified string
	// V1 maps each cgroup v1 controller ("memory", "cpu", ...) and each
	// named hierarchy ("name=systemd") to its mount point. Co-mounted
	// controllers ("cpu,cpuacct") share one mount point.
	V1 map[string]string
}

// v1Controllers are the controller names the kernel knows for cgroup v1.
// Other words in a cgroup mount's options (rw, xattr, release_agent=...)
// are not controllers.
var v1Controllers = map[string]bool{
	"blkio": true, "cpu": true, "cpuacct": true, "cpuset": true, "devices": true,
	"freezer": true, "hugetlb": true, "memory": true, "misc": true, "net_cls": true,
	"net_prio": true, "perf_event": true, "pids": true, "rdma": true, "debug": true,
}

// Mode tells the layout apart: any v1 controller hierarchy makes it legacy,
// or hybrid when a cgroup2 hierarchy is mounted too; no v1 controller and a
// cgroup2 hierarchy is unified. Named v1 hierarchies alone (name=systemd)
// do not count as v1. Zero means no cgroup hierarchy at all.
func (l Layout) Mode() Mode {
	hasV1 := false
	for c := range l.V1 {
		if v1Controllers[c] {
			hasV1 = true
			break
		}
	}
	switch {
	case hasV1 && l.Unified != "":
		return ModeHybrid
	case hasV1:
		return ModeLegacy
	case l.Unified != "":
		return ModeUnified
	}
	return 0
}

// DetectLayout reads /proc/self/mountinfo.
func DetectLayout() (Layout, error) {
	ms, err := proc.Mounts(isCgroup)
	if err != nil {
		return Layout{}, err
	}
	return layoutOf(ms)
}

// ParseMountinfo finds the cgroup mounts in a /proc/PID/mountinfo text.
// When one hierarchy is mounted more than once, a mount point under
// /sys/fs/cgroup wins over others, and the first seen otherwise. It fails
// when there is no cgroup mount at all.
func ParseMountinfo(r io.Reader) (Layout, error) {
	ms, err := proc.ParseMountinfo(r, isCgroup)
	if err != nil {
		return Layout{}, fmt.Errorf("mountinfo: %w", err)
	}
	return layoutOf(ms)
}

func isCgroup(m *proc.Mount) bool { return m.FSType == "cgroup" || m.FSType == "cgroup2" }

// layoutOf is the layout of the cgroup mounts ms (see ParseMountinfo).
func layoutOf(ms []proc.Mount) (Layout, error) {
	l := Layout{V1: map[string]string{}}
	preferred := func(p string) bool { return p == "/sys/fs/cgroup" || strings.HasPrefix(p, "/sys/fs/cgroup/") }
	better := func(old, new string) bool { return old == "" || (!preferred(old) && preferred(new)) }
	for _, m := range ms {
		switch m.FSType {
		case "cgroup2":
			if better(l.Unified, m.Mountpoint) {
				l.Unified = m.Mountpoint
			}
		case "cgroup":
			for _, opt := range strings.Split(m.VFSOptions, ",") {
				if v1Controllers[opt] || strings.HasPrefix(opt, "name=") {
					if better(l.V1[opt], m.Mountpoint) {
						l.V1[opt] = m.Mountpoint
					}
				}
			}
		}
	}
	if l.Mode() == 0 {
		return Layout{}, errors.New("no cgroup hierarchy is mounted")
	}
	return l, nil
}

// hierarchy is one mounted hierarchy in use by a manager.
type hierarchy struct {
	names []string // controllers (and name=X) mounted there; nil for cgroup2
	mount string
}

// hierarchies lists the hierarchies a manager uses in l's mode, v1 ones
// sorted by mount point, the cgroup2 one (hybrid, unified) last.
func (l Layout) hierarchies() []hierarchy {
	var hs []hierarchy
	if l.Mode() != ModeUnified {
		byMount := map[string][]string{}
		for c, m := range l.V1 {
			byMount[m] = append(byMount[m], c)
		}
		for m, names := range byMount {
			sort.Strings(names)
			hs = append(hs, hierarchy{names: names, mount: m})
		}
		sort.Slice(hs, func(i, j int) bool { return hs[i].mount < hs[j].mount })
	}
	if l.Unified != "" {
		hs = append(hs, hierarchy{mount: l.Unified})
	}
	return hs
}
