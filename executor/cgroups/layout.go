package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
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
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Layout{}, err
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// ParseMountinfo finds the cgroup mounts in a /proc/PID/mountinfo text.
// When one hierarchy is mounted more than once, a mount point under
// /sys/fs/cgroup wins over others, and the first seen otherwise. It fails
// when there is no cgroup mount at all.
func ParseMountinfo(r io.Reader) (Layout, error) {
	l := Layout{V1: map[string]string{}}
	preferred := func(p string) bool { return p == "/sys/fs/cgroup" || strings.HasPrefix(p, "/sys/fs/cgroup/") }
	better := func(old, new string) bool { return old == "" || (!preferred(old) && preferred(new)) }
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	line := 0
	for s.Scan() {
		line++
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		fields := strings.Fields(s.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+3 > len(fields) {
			return Layout{}, fmt.Errorf("mountinfo line %d: malformed: %q", line, s.Text())
		}
		point := unescapeMountinfo(fields[4])
		fstype := fields[sep+1]
		super := ""
		if sep+3 < len(fields) {
			super = fields[sep+3]
		}
		switch fstype {
		case "cgroup2":
			if better(l.Unified, point) {
				l.Unified = point
			}
		case "cgroup":
			for _, opt := range strings.Split(super, ",") {
				if v1Controllers[opt] || strings.HasPrefix(opt, "name=") {
					if better(l.V1[opt], point) {
						l.V1[opt] = point
					}
				}
			}
		}
	}
	if err := s.Err(); err != nil {
		return Layout{}, fmt.Errorf("reading mountinfo: %w", err)
	}
	if l.Mode() == 0 {
		return Layout{}, errors.New("no cgroup hierarchy is mounted")
	}
	return l, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
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
