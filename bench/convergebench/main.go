package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/bench/internal/bundle"
	"reconciled.dev/reconciled/bench/internal/daemonproc"
	"reconciled.dev/reconciled/bench/internal/host"
	"reconciled.dev/reconciled/bench/internal/measure"
	"reconciled.dev/reconciled/internal/daemon"
	"reconciled.dev/reconciled/internal/proc"
)

func main() {
	var (
		n        = flag.Int("n", 1000, "containers to converge, keep idle, adopt and remove")
		drops    = flag.Int("drops", 200, "containers dropped one at a time for the drop-to-running latency")
		dropsAt  = flag.Int("drops-loaded", 50, "containers dropped one at a time while the n converged ones run (0: skip)")
		gap      = flag.Duration("drop-gap", 0, "pause between one dropped container running and the next drop (0: none, back to back); a gap measures a single edit on a quiet host, the spares made meanwhile")
		idle     = flag.Duration("idle", 30*time.Second, "how long to measure the idle daemon")
		parallel = flag.Int("parallel", 4, "the daemon's --parallel")
		ours     = flag.String("reconciled", "bin/reconciled", "path to the reconciled binary")
		shim     = flag.String("nohybrid", "", "LD_PRELOAD shim that lets crun 1.8 run on a hybrid cgroup layout")
		busybox  = flag.String("busybox", "/bin/busybox", "static busybox for the root filesystem")
		work     = flag.String("work", "", "work directory (default: a new one under $TMPDIR)")
		runtimes = flag.String("runtimes", "runc,crun", "runtimes to compare with (empty or none: none)")
		stateIn  = flag.String("state-in", "/dev/shm", "where the daemon's state directory goes: a tmpfs, as /run is on a Debian host (empty: the work directory); in a systemdtest sandbox use /run, its own (/dev/shm there is the host's)")
		driver   = flag.String("cgroup-driver", "auto", "the daemon's --cgroup-driver: auto, cgroupfs or systemd")
		base     = flag.String("base", "", "another reconciled binary (an earlier build): measure only the drop to running, -pairs times with each binary, alternating, in the same run (an A/B on a noisy host)")
		pairs    = flag.Int("pairs", 6, "with -base: how many times each binary runs the -drops drops")
	)
	flag.Parse()
	b := &bench{n: *n, drops: *drops, dropsLoaded: *dropsAt, dropGap: *gap, idle: *idle, parallel: *parallel, shim: *shim, stateIn: *stateIn, driver: *driver,
		base: *base, pairs: *pairs}
	err := b.run(*ours, *busybox, *work, *runtimes)
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "convergebench:", err)
		os.Exit(1)
	}
}

type bench struct {
	n, drops, parallel int
	dropGap            time.Duration
	dropsLoaded        int
	idle               time.Duration
	shim, stateIn      string
	driver             string // --cgroup-driver
	base               string // -base: an A/B of the drop with this binary
	pairs              int

	bin                      string
	work, manifests, staging string
	state, logDir, rootfs    string
	daemon                   *daemonproc.Daemon
	ino                      int // inotify on the log directory
	cleanups                 []func()
}

func (b *bench) cleanup() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
}

func (b *bench) run(ours, busybox, work, runtimes string) error {
	var err error
	if b.bin, err = filepath.Abs(ours); err != nil {
		return err
	}
	if work == "" {
		if work, err = os.MkdirTemp("", "convergebench-"); err != nil {
			return err
		}
		b.cleanups = append(b.cleanups, func() { os.RemoveAll(work) }) // unmounted first (cleanups run last to first)
	}
	b.work = work
	b.manifests = filepath.Join(work, "manifests")
	b.staging = filepath.Join(work, "staging")
	b.state = filepath.Join(work, "state")
	if b.stateIn != "" {
		if b.state, err = os.MkdirTemp(b.stateIn, "convergebench-state-"); err != nil {
			return err
		}
		state := b.state
		b.cleanups = append(b.cleanups, func() { daemonproc.UnmountRootfs(state); os.RemoveAll(state) })
	} else {
		state := b.state
		b.cleanups = append(b.cleanups, func() { daemonproc.UnmountRootfs(state) })
	}
	b.logDir = filepath.Join(work, "logs")
	for _, d := range []string{b.manifests, b.staging, b.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	bundle, err := bundle.Make(filepath.Join(work, "bundle"), busybox, []string{"/bin/sh", "-c", "echo up; exec sleep 100000"})
	if err != nil {
		return err
	}
	b.rootfs = filepath.Join(bundle, "rootfs")
	b.cleanups = append(b.cleanups, b.removeContainers)
	if b.ino, err = unix.InotifyInit1(unix.IN_CLOEXEC); err != nil {
		return os.NewSyscallError("inotify_init1", err)
	}
	if _, err := unix.InotifyAddWatch(b.ino, b.logDir, unix.IN_MODIFY); err != nil {
		return os.NewSyscallError("inotify_add_watch", err)
	}

	if err := b.startDaemon(); err != nil {
		return err
	}
	var first daemon.Report
	if err := daemon.Query(context.Background(), b.state, "/v1/status", &first); err != nil {
		return err
	}
	fmt.Printf("%s\nreconciled run --parallel %d --cgroup-driver %s --state %s: cgroup driver %s\n\n",
		host.Describe(), b.parallel, b.driver, b.state, first.CgroupDriver)
	if b.base != "" {
		return b.abDrops()
	}

	// Drop to running, one at a time.
	if b.drops > 0 {
		label := "drop to running (%d, one at a time)"
		if b.dropGap > 0 {
			label = fmt.Sprintf("drop to running (%%d, one at a time, %s apart)", b.dropGap)
		}
		if _, err := b.dropLatency("drop-", b.drops, label); err != nil {
			return err
		}
	}

	// Converge N from empty.
	names := make(map[string]bool, b.n)
	for i := 0; i < b.n; i++ {
		name := fmt.Sprintf("c-%04d", i)
		names[name] = true
		if err := b.stage(name); err != nil {
			return err
		}
	}
	t0 := time.Now()
	for name := range names {
		if err := os.Rename(filepath.Join(b.staging, name+".yaml"), filepath.Join(b.manifests, name+".yaml")); err != nil {
			return err
		}
	}
	if _, err := b.waitUp(names, 10*time.Minute); err != nil {
		return err
	}
	converge := time.Since(t0)
	fmt.Printf("converge %d from empty: %s (%.1f containers/s)\n", b.n, measure.MS(converge), float64(b.n)/converge.Seconds())

	// Idle with N running: let the follow-up checks settle first.
	time.Sleep(5 * time.Second)
	pid := b.daemon.Pid()
	u0, err := readUsage(pid)
	if err != nil {
		return err
	}
	w0 := time.Now()
	time.Sleep(b.idle)
	u1, err := readUsage(pid)
	if err != nil {
		return err
	}
	wall := time.Since(w0)
	rss, err := measure.RSSKiB(pid)
	if err != nil {
		return err
	}
	fmt.Printf("idle with %d running, over %s: %s, RSS %.1f MiB\n", b.n, b.idle, u1.sub(u0, wall), float64(rss)/1024)

	// Drop to running beside the N running (each new set is planned for
	// what it changes, so this should not grow with N).
	if b.dropsLoaded > 0 {
		if _, err := b.dropLatency("late-", b.dropsLoaded, fmt.Sprintf("drop to running with %d running (%%d, one at a time)", b.n)); err != nil {
			return err
		}
	}

	// Adoption after a restart.
	var before daemon.Report
	if err := daemon.Query(context.Background(), b.state, "/v1/status", &before); err != nil {
		return err
	}
	pids := map[string]int{}
	for _, c := range before.Containers {
		pids[c.Name] = c.Pid
	}
	if err := b.stopDaemon(syscall.SIGTERM); err != nil {
		return err
	}
	t0 = time.Now()
	if err := b.startDaemon(); err != nil {
		return err
	}
	restarted := 0
	for {
		var rep daemon.Report
		err := daemon.Query(context.Background(), b.state, "/v1/status", &rep)
		if err == nil && rep.Daemon.Loaded {
			running := 0
			restarted = 0
			for _, c := range rep.Containers {
				if c.Phase == "running" && c.Pid > 0 {
					running++
					if c.Pid != pids[c.Name] {
						restarted++
					}
				}
			}
			if running == b.n {
				break
			}
		}
		if time.Since(t0) > 2*time.Minute {
			return errors.New("adoption did not finish in 2 minutes")
		}
		time.Sleep(50 * time.Millisecond) // a full report of N containers is not free
	}
	fmt.Printf("adopt %d after a restart: %s (from exec to all shown running; %d restarted)\n", b.n, measure.MS(time.Since(t0)), restarted)

	// Remove them all.
	t0 = time.Now()
	if err := b.removeAll("c-"); err != nil {
		return err
	}
	fmt.Printf("remove %d: %s\n", b.n, measure.MS(time.Since(t0)))
	if err := b.stopDaemon(syscall.SIGTERM); err != nil {
		return err
	}

	for _, rt := range strings.Split(runtimes, ",") {
		if rt == "" || rt == "none" {
			continue
		}
		d, err := b.sequential(rt, bundle)
		if err != nil {
			return err
		}
		fmt.Printf("%s: create+start %d sequentially: %s (%.1f containers/s)\n", rt, b.n, measure.MS(d), float64(b.n)/d.Seconds())
	}
	return nil
}

// stage writes a manifest into the staging directory (same filesystem).
// drops is what dropLatency measured.
type drops struct {
	lat []time.Duration // rename to first line, each
	// cpu is the CPU all of the host's CPUs spent per drop, busy
	// (host.BusyTime), and daemonCPU the daemon's own share: on a 2-core
	// host dropped back to back, the latency is about cpu / 2 (both CPUs
	// busy): what a change saves in CPU, the latency follows.
	cpu, daemonCPU time.Duration
}

// dropLatency renames k manifests (prefix + number) into the directory one
// at a time, each once the previous one's process has written its first
// line, prints p50, p99 and max of rename-to-first-line (label takes k)
// and the CPU per drop, and removes them again.
func (b *bench) dropLatency(prefix string, k int, label string) (drops, error) {
	// Every manifest is written to the staging directory first: a new
	// file between two drops would be the benchmark's own work beside the
	// daemon's (on ext4 without a journal, finding a free inode among
	// those deleted in the last minutes alone took 0.9 ms per file).
	for i := 0; i < k; i++ {
		if err := b.stage(fmt.Sprintf("%s%04d", prefix, i)); err != nil {
			return drops{}, err
		}
	}
	var lat, quiet []time.Duration
	kdamonds := host.KdamondPIDs("/sys")
	var hit int
	var kdTotal time.Duration
	busy0, err := host.BusyTime()
	if err != nil {
		return drops{}, err
	}
	own0, err := readUsage(b.daemon.Pid())
	if err != nil {
		return drops{}, err
	}
	for i := 0; i < k; i++ {
		if i > 0 && b.dropGap > 0 {
			time.Sleep(b.dropGap)
		}
		name := fmt.Sprintf("%s%04d", prefix, i)
		kd0 := host.CPUTime(kdamonds)
		t0 := time.Now()
		if err := os.Rename(filepath.Join(b.staging, name+".yaml"), filepath.Join(b.manifests, name+".yaml")); err != nil {
			return drops{}, err
		}
		up, err := b.waitUp(map[string]bool{name: true}, 30*time.Second)
		if err != nil {
			return drops{}, err
		}
		lat = append(lat, up[name].Sub(t0))
		if kd := host.CPUTime(kdamonds) - kd0; kd > 0 {
			hit++
			kdTotal += kd
		} else {
			quiet = append(quiet, up[name].Sub(t0))
		}
	}
	busy1, err := host.BusyTime()
	if err != nil {
		return drops{}, err
	}
	own1, err := readUsage(b.daemon.Pid())
	if err != nil {
		return drops{}, err
	}
	d := drops{lat: lat, cpu: (busy1 - busy0) / time.Duration(k), daemonCPU: (own1.cpu - own0.cpu) / time.Duration(k)}
	fmt.Printf(label+": p50 %s  p99 %s  max %s\n", k, measure.MS(measure.Percentile(lat, 0.50)), measure.MS(measure.Percentile(lat, 0.99)), measure.MS(measure.Percentile(lat, 1)))
	fmt.Printf("  CPU per drop: %s on all CPUs (every process; /proc/stat), the daemon's own %s\n", measure.MS(d.cpu), measure.MS(d.daemonCPU))
	if len(kdamonds) > 0 {
		// DAMON's kernel threads compete with a drop for the CPUs and
		// for the locks of the pages they check (see host.DAMON).
		fmt.Printf("  kdamond ran during %d of them (%s of CPU in all)", hit, measure.MS(kdTotal))
		if len(quiet) > 0 {
			fmt.Printf("; the %d others: p50 %s  p99 %s  max %s", len(quiet), measure.MS(measure.Percentile(quiet, 0.50)), measure.MS(measure.Percentile(quiet, 0.99)), measure.MS(measure.Percentile(quiet, 1)))
		}
		fmt.Println()
	}
	t0 := time.Now()
	if err := b.removeAll(prefix); err != nil {
		return drops{}, err
	}
	fmt.Printf("  removed them in %s\n", measure.MS(time.Since(t0)))
	return d, nil
}

// abDrops runs the drop to running -pairs times with each binary,
// alternating (base first in odd pairs, ours first in even ones, so that a
// host that drifts over the run favours neither), a daemon started afresh
// on the same state for each, and prints each run's p50 and p99, their
// medians, and in how many pairs ours had the lower p50.
func (b *bench) abDrops() error {
	ours := b.bin
	base, err := filepath.Abs(b.base)
	if err != nil {
		return err
	}
	var p50, p99, cpu, own [2][]time.Duration
	bins := [2]string{base, ours}
	names := [2]string{"base", "ours"}
	for i := 0; i < b.pairs; i++ {
		for k := range bins {
			j := k ^ i%2
			bin := bins[j]
			if err := b.stopDaemon(syscall.SIGTERM); err != nil {
				return err
			}
			b.bin = bin
			if err := b.startDaemon(); err != nil {
				return fmt.Errorf("%s (%s): %w", names[j], bin, err)
			}
			label := fmt.Sprintf("pair %d, %s: drop to running (%%d, one at a time", i+1, names[j])
			if b.dropGap > 0 {
				label += ", " + b.dropGap.String() + " apart"
			}
			d, err := b.dropLatency(fmt.Sprintf("ab%d%s-", i+1, names[j]), b.drops, label+")")
			if err != nil {
				return err
			}
			p50[j] = append(p50[j], measure.Percentile(d.lat, 0.50))
			p99[j] = append(p99[j], measure.Percentile(d.lat, 0.99))
			cpu[j] = append(cpu[j], d.cpu)
			own[j] = append(own[j], d.daemonCPU)
		}
	}
	b.bin = ours
	lower := 0
	for i := range p50[1] {
		if p50[1][i] < p50[0][i] {
			lower++
		}
	}
	fmt.Printf("\nA/B over %d pairs, medians of the runs' p50 / p99: base %s / %s (%s), ours %s / %s (%s); ours had the lower p50 in %d of %d pairs\n",
		b.pairs, measure.MS(measure.Median(p50[0])), measure.MS(measure.Median(p99[0])), base,
		measure.MS(measure.Median(p50[1])), measure.MS(measure.Median(p99[1])), ours, lower, b.pairs)
	fmt.Printf("CPU per drop, medians: base %s on all CPUs, the daemon's %s; ours %s, the daemon's %s\n",
		measure.MS(measure.Median(cpu[0])), measure.MS(measure.Median(own[0])), measure.MS(measure.Median(cpu[1])), measure.MS(measure.Median(own[1])))
	return b.stopDaemon(syscall.SIGTERM)
}

func (b *bench) stage(name string) error {
	m := fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata: {name: %s}
spec:
  root: {path: %s, readonly: true}
  command: ["/bin/sh", "-c", "echo up; exec sleep 100000"]
  stop: {signal: SIGKILL, timeout: 1s}
`, name, b.rootfs)
	return os.WriteFile(filepath.Join(b.staging, name+".yaml"), []byte(m), 0o644)
}

func (b *bench) startDaemon() error {
	d, err := daemonproc.Start(b.bin, filepath.Join(b.work, "daemon.log"), "run", "--manifests", b.manifests, "--state", b.state, "--log-dir", b.logDir,
		"--image-root", filepath.Join(b.state, "images"), "--image-import-dir", filepath.Join(b.state, "import"), "--parallel", strconv.Itoa(b.parallel), "--cgroup-driver", b.driver)
	if err != nil {
		return err
	}
	b.daemon = d
	return d.WaitReady(context.Background(), b.state, nil)
}

func (b *bench) stopDaemon(sig syscall.Signal) error {
	if b.daemon == nil {
		return nil
	}
	if err := b.daemon.Stop(sig, 30*time.Second); err != nil {
		return err
	}
	b.daemon = nil
	return nil
}

// waitUp waits until every name's log file was written to (its process
// ran) and returns when each was first seen.
func (b *bench) waitUp(names map[string]bool, timeout time.Duration) (map[string]time.Time, error) {
	up := map[string]time.Time{}
	// Containers that wrote before we looked.
	for name := range names {
		if fi, err := os.Stat(daemon.LogFile(b.logDir, name)); err == nil && fi.Size() > 0 {
			up[name] = time.Now()
		}
	}
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(timeout)
	for len(up) < len(names) {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("%d of %d containers running after %s", len(up), len(names), timeout)
		}
		fds := []unix.PollFd{{Fd: int32(b.ino), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(min(left, time.Second).Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			return nil, err
		}
		if fds[0].Revents == 0 {
			continue
		}
		now := time.Now()
		k, err := unix.Read(b.ino, buf)
		if err != nil {
			return nil, os.NewSyscallError("read inotify", err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			file := strings.TrimRight(string(nameBytes), "\x00")
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				for name := range names {
					if _, ok := up[name]; !ok {
						if fi, err := os.Stat(daemon.LogFile(b.logDir, name)); err == nil && fi.Size() > 0 {
							up[name] = now
						}
					}
				}
				continue
			}
			name, ok := strings.CutSuffix(file, ".log")
			if !ok || !names[name] {
				continue
			}
			if _, seen := up[name]; !seen {
				up[name] = now
			}
		}
	}
	return up, nil
}

// removeAll removes the manifests whose names start with prefix and waits
// until their containers are gone from the runtime root.
func (b *bench) removeAll(prefix string) error {
	entries, err := os.ReadDir(b.manifests)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			if err := os.Remove(filepath.Join(b.manifests, e.Name())); err != nil {
				return err
			}
		}
	}
	root := filepath.Join(b.state, "runtime")
	deadline := time.Now().Add(10 * time.Minute)
	for {
		left := 0
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d containers still there after 10 minutes", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Their logs, so that the next phase sees fresh writes.
	logs, _ := filepath.Glob(filepath.Join(b.logDir, prefix+"*"))
	for _, l := range logs {
		os.Remove(l)
	}
	return nil
}

// removeContainers deletes whatever is left under the daemon's runtime root
// (after a failure), with the binary.
func (b *bench) removeContainers() {
	b.stopDaemon(syscall.SIGTERM)
	root := filepath.Join(b.state, "runtime")
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		exec.Command(b.bin, "runtime", "--root", root, "delete", "--force", e.Name()).Run()
	}
}

// sequential creates and starts b.n containers with runc or crun, one after
// the other, and returns the time that took; then removes them (untimed).
func (b *bench) sequential(rt, bundle string) (time.Duration, error) {
	root := filepath.Join(b.work, "state-"+rt)
	var env []string
	if rt == "crun" && b.shim != "" {
		env = []string{"LD_PRELOAD=" + b.shim}
	}
	runCmd := func(args ...string) error {
		cmd := exec.Command(rt, append([]string{"--root", root}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := os.CreateTemp(b.work, "out") // a file: the container inherits stdio
		if err != nil {
			return err
		}
		defer os.Remove(out.Name())
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			data, _ := os.ReadFile(out.Name())
			return fmt.Errorf("%s %s: %w: %s", rt, strings.Join(args, " "), err, data)
		}
		return nil
	}
	var ids []string
	defer func() {
		for _, id := range ids {
			if err := runCmd("delete", "--force", id); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
			if rt == "crun" {
				// In the shim's mode crun leaves an empty cgroup behind in
				// the unified hierarchy (see bench/runtime.sh).
				os.Remove(filepath.Join("/sys/fs/cgroup/unified", id))
			}
		}
	}()
	t0 := time.Now()
	for i := 0; i < b.n; i++ {
		id := fmt.Sprintf("cb-%s-%04d", rt, i)
		if err := runCmd("create", "--bundle", bundle, id); err != nil {
			return 0, err
		}
		ids = append(ids, id)
		if err := runCmd("start", id); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

// usage is what a process has used so far.
type usage struct {
	// cpu is the process's CPU time in ns, exited threads included (its
	// process CPU clock: clock_gettime(CLOCK_PROCESS_CPUTIME_ID) seen from
	// outside).
	cpu time.Duration
	// threadsCPU is the sum over its live threads of
	// /proc/PID/task/TID/schedstat's first field (ns on a CPU); a thread
	// that exits takes its share with it.
	threadsCPU time.Duration
	// ticks is utime+stime of /proc/PID/stat (clock ticks, exited
	// threads included): a coarse cross-check.
	ticks int64
	// switches is the sum over its live threads of their voluntary and
	// nonvoluntary context switches: each is a wakeup, or a preemption.
	switches int64
	threads  map[int]bool
}

// readUsage reads pid's usage from /proc and its CPU clock.
func readUsage(pid int) (usage, error) {
	u := usage{threads: map[int]bool{}}
	var ts unix.Timespec
	// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED), as clock_getcpuclockid
	// returns it.
	if err := unix.ClockGettime(int32((^pid)<<3|2), &ts); err != nil {
		return u, os.NewSyscallError("clock_gettime", err)
	}
	u.cpu = time.Duration(ts.Nano())
	st, err := proc.ReadStat(pid)
	if err != nil {
		return u, err
	}
	u.ticks = int64(st.UTime + st.STime)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return u, err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		dir := fmt.Sprintf("/proc/%d/task/%d/", pid, tid)
		sched, err := os.ReadFile(dir + "schedstat")
		if err != nil {
			continue // exited meanwhile
		}
		status, err := os.ReadFile(dir + "status")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(sched)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			u.threadsCPU += time.Duration(ns)
		}
		for _, l := range strings.Split(string(status), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				u.switches += n
			}
		}
		u.threads[tid] = true
	}
	return u, nil
}

// sub says what was used between u0 and u, over wall.
func (u usage) sub(u0 usage, wall time.Duration) string {
	pct := func(d time.Duration) float64 { return float64(d) / float64(wall) * 100 }
	exited := 0
	for tid := range u0.threads {
		if !u.threads[tid] {
			exited++
		}
	}
	s := fmt.Sprintf("CPU %.4f%% of one core (%.1f ms; live threads %.1f ms, %d ticks), %.2f wakeups/s (%d context switches, %d threads",
		pct(u.cpu-u0.cpu), float64(u.cpu-u0.cpu)/1e6, float64(u.threadsCPU-u0.threadsCPU)/1e6, u.ticks-u0.ticks,
		float64(u.switches-u0.switches)/wall.Seconds(), u.switches-u0.switches, len(u.threads))
	if exited > 0 {
		s += fmt.Sprintf(", %d exited: their switches are not counted", exited)
	}
	return s + ")"
}
