// Package host describes the machine a benchmark runs on, for the header
// every benchmark prints: kernel, CPUs, cgroup layout, whether each cgroup
// hierarchy is mounted with favordynmods (a cgroup.procs write waits for
// an RCU grace period without it), so that figures taken on a tuned host
// are never compared with an untuned one, and what a page fault costs
// there: under some hypervisors a first touch of a page costs 50 times
// what it does on bare metal, and every process start pays some hundreds
// of them.
package host

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Describe is the header line: "Linux 6.18.0, 2 CPUs; cgroup v1 hybrid
// (…); favordynmods: off on every hierarchy (…); page fault: 0.31 us
// (…)".
func Describe() string {
	pf := "page fault: not measured"
	if d, err := PageFault(); err == nil {
		pf = fmt.Sprintf("page fault: %.2f us (first write to an anonymous page, best of 5)", float64(d.Nanoseconds())/1e3)
	}
	return fmt.Sprintf("%s, %d CPUs; cgroup %s; favordynmods: %s; %s", Kernel(), CPUs(), CgroupLayout(), Favordynmods(), pf)
}

// PageFault measures what the first write to a page of fresh anonymous
// memory costs here: the best of five passes over 16 MiB, each mapped
// anew. On bare metal it is a fraction of a microsecond; under a
// hypervisor that backs guest memory lazily (or takes freed pages back)
// it can be tens, and a Go process's start, which touches about 1.3 MiB
// of fresh memory, pays it some hundreds of times.
func PageFault() (time.Duration, error) {
	const size = 16 << 20
	page := os.Getpagesize()
	best := time.Duration(-1)
	for range 5 {
		mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return 0, fmt.Errorf("map %d bytes: %w", size, err)
		}
		start := time.Now()
		for i := 0; i < size; i += page {
			mem[i] = 1
		}
		d := time.Since(start) / time.Duration(size/page)
		if err := unix.Munmap(mem); err != nil {
			return 0, fmt.Errorf("unmap: %w", err)
		}
		if best < 0 || d < best {
			best = d
		}
	}
	return best, nil
}

// Kernel is "Linux RELEASE".
func Kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "Linux (unknown release)"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

// CPUs is how many CPUs this process may run on.
func CPUs() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return 0
	}
	return set.Count()
}

// CgroupLayout says which cgroup hierarchies the host mounts.
func CgroupLayout() string {
	var root, unified string
	for _, m := range cgroupMounts() {
		switch {
		case m.point == "/sys/fs/cgroup":
			root = m.fstype
		case m.point == "/sys/fs/cgroup/unified" && m.fstype == "cgroup2":
			unified = m.fstype
		}
	}
	switch {
	case root == "cgroup2":
		return "v2 (unified)"
	case unified != "":
		return "v1 hybrid (cgroup2 at /sys/fs/cgroup/unified)"
	default:
		return "v1"
	}
}

// Favordynmods says, for each cgroup hierarchy, whether it is mounted with
// favordynmods, and what the kernel command line asks for.
func Favordynmods() string {
	var on, off []string
	for _, m := range cgroupMounts() {
		name := filepath.Base(m.point)
		if m.point == "/sys/fs/cgroup" {
			name = "unified"
		}
		if m.opts["favordynmods"] {
			on = append(on, name)
		} else {
			off = append(off, name)
		}
	}
	var s string
	switch {
	case len(on) == 0 && len(off) == 0:
		s = "no cgroup hierarchy mounted"
	case len(on) == 0:
		s = "off on every hierarchy (" + strings.Join(off, ", ") + ")"
	case len(off) == 0:
		s = "ON on every hierarchy (" + strings.Join(on, ", ") + ")"
	default:
		s = "ON for " + strings.Join(on, ", ") + "; off for " + strings.Join(off, ", ")
	}
	if cmdline, err := os.ReadFile("/proc/cmdline"); err == nil {
		for _, f := range strings.Fields(string(cmdline)) {
			if strings.HasPrefix(f, "cgroup_favordynmods=") {
				s += "; kernel command line " + f
			}
		}
	}
	return s
}

type mount struct {
	point, fstype string
	opts          map[string]bool // mount and super options together
}

// cgroupMounts lists the cgroup and cgroup2 mounts under /sys/fs/cgroup,
// from /proc/self/mountinfo (one per hierarchy; co-mounted controllers
// such as cpu,cpuacct appear once per mount point).
func cgroupMounts() []mount {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []mount
	for _, l := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 3 || (g[0] != "cgroup" && g[0] != "cgroup2") {
			continue
		}
		if !strings.HasPrefix(f[4], "/sys/fs/cgroup") {
			continue
		}
		opts := map[string]bool{}
		for _, o := range strings.Split(f[5]+","+g[2], ",") {
			opts[o] = true
		}
		out = append(out, mount{point: f[4], fstype: g[0], opts: opts})
	}
	return out
}
