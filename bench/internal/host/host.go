// Package host describes the machine a benchmark runs on, for the header
// every benchmark prints: kernel, CPUs, cgroup layout, whether each cgroup
// hierarchy is mounted with favordynmods (a cgroup.procs write waits for
// an RCU grace period without it), so that figures taken on a tuned host
// are never compared with an untuned one, what a page fault costs there
// (under some hypervisors a first touch of a page costs 50 times what it
// does on bare metal, and every process start pays some hundreds of
// them) and what a system call costs (ten times bare metal's on some),
// and whether DAMON's kernel threads reclaim memory in the
// background (see DAMON).
package host

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Describe is the header line: "Linux 6.18.0, 2 CPUs; cgroup v1 hybrid
// (…); favordynmods: off on every hierarchy (…); page fault: 0.31 us
// (…); system call: 0.10 us (…); DAMON: off".
func Describe() string {
	pf := "page fault: not measured"
	if d, err := PageFault(); err == nil {
		pf = fmt.Sprintf("page fault: %.2f us (first write to an anonymous page, best of 5)", float64(d.Nanoseconds())/1e3)
	}
	sc := fmt.Sprintf("system call: %.2f us (getppid, best of 5)", float64(SystemCall().Nanoseconds())/1e3)
	return fmt.Sprintf("%s, %d CPUs; cgroup %s; favordynmods: %s; %s; %s; DAMON: %s", Kernel(), CPUs(), CgroupLayout(), Favordynmods(), pf, sc, DAMON("/sys"))
}

// SystemCall measures what the cheapest system call costs here: the best
// of five runs of 100,000 getppid calls. On bare metal it is about 0.1 us;
// on some VMs every system call traps to the hypervisor and costs ten
// times that, and a container's create makes about a thousand of them
// between the runtime and its processes.
func SystemCall() time.Duration {
	const n = 100000
	best := time.Duration(-1)
	for range 5 {
		start := time.Now()
		for range n {
			unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)
		}
		if d := time.Since(start) / n; best < 0 || d < best {
			best = d
		}
	}
	return best
}

// DAMON says whether DAMON (the kernel's data access monitor) runs here,
// and what for: the kdamonds started through sysfs
// (SYS/kernel/mm/damon/admin) with their operations and scheme actions,
// and the DAMON modules that are enabled (damon_reclaim, damon_lru_sort,
// damon_stat). A kdamond that pages cold memory out walks the reverse map
// of the pages it checks, holding each file's mapping lock while it walks
// that file's mappings, for up to its quota of CPU time in a row. On a
// 2-core VM with a pageout scheme (50 ms per second), an exec of the
// busybox that 1,000 running containers map waited 25 ms for it in
// __mmap_region, with the other CPU idle: any runtime's container would.
// Latency tails measured with one on are not comparable with tails
// measured without.
func DAMON(sys string) string {
	var on []string
	admin := filepath.Join(sys, "kernel/mm/damon/admin/kdamonds")
	kds, _ := filepath.Glob(filepath.Join(admin, "[0-9]*"))
	for _, kd := range kds {
		if readTrim(filepath.Join(kd, "state")) != "on" {
			continue
		}
		var what []string
		ctxs, _ := filepath.Glob(filepath.Join(kd, "contexts/[0-9]*"))
		for _, c := range ctxs {
			ops := readTrim(filepath.Join(c, "operations"))
			schemes, _ := filepath.Glob(filepath.Join(c, "schemes/[0-9]*"))
			var acts []string
			for _, s := range schemes {
				a := readTrim(filepath.Join(s, "action"))
				if ms := readTrim(filepath.Join(s, "quotas/ms")); ms != "" && ms != "0" {
					a += " up to " + ms + " ms of CPU per " + readTrim(filepath.Join(s, "quotas/reset_interval_ms")) + " ms"
				}
				acts = append(acts, a)
			}
			if len(acts) == 0 {
				acts = []string{"monitoring only"}
			}
			what = append(what, ops+": "+strings.Join(acts, ", "))
		}
		on = append(on, "kdamond "+filepath.Base(kd)+" ("+strings.Join(what, "; ")+")")
	}
	for _, m := range []string{"damon_reclaim", "damon_lru_sort", "damon_stat"} {
		if v := readTrim(filepath.Join(sys, "module", m, "parameters/enabled")); v == "Y" || v == "1" {
			on = append(on, m)
		}
	}
	if len(on) == 0 {
		return "off"
	}
	return "ON: " + strings.Join(on, ", ")
}

// KdamondPIDs returns the PIDs of the kdamonds that run (see DAMON).
func KdamondPIDs(sys string) []int {
	var out []int
	kds, _ := filepath.Glob(filepath.Join(sys, "kernel/mm/damon/admin/kdamonds/[0-9]*"))
	for _, kd := range kds {
		if readTrim(filepath.Join(kd, "state")) != "on" {
			continue
		}
		if pid, err := strconv.Atoi(readTrim(filepath.Join(kd, "pid"))); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out
}

// CPUTime returns the CPU time the threads pids have run for, from
// /proc/PID/schedstat (nanoseconds, where /proc/PID/stat counts ticks);
// a PID that is gone counts nothing.
func CPUTime(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		f := strings.Fields(readTrim("/proc/" + strconv.Itoa(pid) + "/schedstat"))
		if len(f) == 0 {
			continue
		}
		if ns, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			sum += time.Duration(ns)
		}
	}
	return sum
}

// BusyTime returns how long all CPUs together have been busy since boot:
// the "cpu" line of /proc/stat (user, nice, system, irq, softirq and
// steal; guest time is counted in user), in clock ticks of 10 ms. Taken
// before and after a phase, it is the CPU the phase cost every process
// (the daemon, its monitors and inits, the workload, the benchmark and the
// kernel's threads), where a latency on a 2-core host also shows waits.
func BusyTime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseBusy(string(b))
}

// userHZ is the unit of /proc/stat: USER_HZ, 100 on every Linux
// architecture's ABI.
const userHZ = 100

func parseBusy(stat string) (time.Duration, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var ticks int64
	// user nice system idle iowait irq softirq steal [guest guest_nice]
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / userHZ), nil
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
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
// such as cpu,cpuacct appear once per mount point). A point mounted over
// again (a sandbox's own /sys/fs/cgroup) counts once: the last mount, the
// one seen there.
func cgroupMounts() []mount {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	return parseCgroupMounts(string(data))
}

// parseCgroupMounts is cgroupMounts of a mountinfo's content.
func parseCgroupMounts(data string) []mount {
	var out []mount
	at := map[string]int{}
	for _, l := range strings.Split(data, "\n") {
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
		m := mount{point: f[4], fstype: g[0], opts: opts}
		if i, ok := at[m.point]; ok {
			out[i] = m
			continue
		}
		at[m.point] = len(out)
		out = append(out, m)
	}
	return out
}
