// Command probebench measures what spec.health's probes cost the daemon
// (issue 17): it runs `reconciled run` with N containers, all probed
// every interval by one kind of probe (none, http, tcp, exec), waits until
// every one is healthy, and reports the CPU over a window of the daemon's
// cgroup and its containers' cgroups (cpuMeter): per probe, and as a share
// of one core. Beside it, `runc exec` and `crun exec` of the exec probe's
// command. Run it through bench/probe.sh.
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

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/bench/internal/bundle"
	"reconciled.dev/reconciled/bench/internal/host"
	"reconciled.dev/reconciled/internal/daemon"
)

func main() {
	bin := flag.String("reconciled", "", "the reconciled binary")
	work := flag.String("work", "", "a scratch directory")
	n := flag.Int("n", 100, "containers")
	interval := flag.Duration("interval", 10*time.Second, "probe interval")
	window := flag.Duration("window", 60*time.Second, "measuring window")
	kinds := flag.String("kinds", "none,http,tcp,exec", "probe kinds, in order")
	rivals := flag.String("rivals", "runc,crun", "OCI runtimes whose `exec` of the exec probe's command is measured beside ours (what docker's and kubelet's exec probes run)")
	shim := flag.String("nohybrid", "", "LD_PRELOAD shim that lets crun 1.8 run on a hybrid cgroup layout")
	busybox := flag.String("busybox", "/bin/busybox", "static busybox for the rivals' bundle")
	flag.Parse()
	if *bin == "" || *work == "" {
		fmt.Fprintln(os.Stderr, "usage: probebench -reconciled BIN -work DIR [-n 100] [-interval 10s] [-window 60s] [-kinds none,http,tcp,exec]")
		os.Exit(2)
	}
	fmt.Println(host.Describe())
	fmt.Printf("%d containers, probe every %s, measured over %s\n", *n, *interval, *window)
	fmt.Printf("%-5s %8s %16s %16s %16s %14s\n", "kind", "probes", "daemon CPU/probe", "in containers", "total CPU/probe", "daemon core %")
	var base usage
	for _, kind := range strings.Split(*kinds, ",") {
		u, probes, err := run(*bin, *busybox, filepath.Join(*work, kind), kind, *n, *interval, *window)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", kind, err)
			os.Exit(1)
		}
		share := 100 * float64(u.daemon) / float64(*window)
		if kind == "none" {
			base = u
			fmt.Printf("%-5s %8s %16s %16s %16s %13.3f%%\n", kind, "-", "-", "-", "-", share)
			continue
		}
		per := func(d, b time.Duration) string {
			if probes == 0 {
				return "-"
			}
			return fmt.Sprintf("%.3f ms", float64(d-b)/float64(probes)/1e6)
		}
		fmt.Printf("%-5s %8d %16s %16s %16s %13.3f%%\n", kind, probes, per(u.daemon, base.daemon), per(u.containers, base.containers),
			per(u.daemon+u.containers, base.daemon+base.containers), share)
	}
	fmt.Println("CPU over the window, less that of the run without probes, per probe: of the daemon's cgroup (the daemon, and exec stages until they join a container), of the containers' cgroups (exec stages once joined, probe servers and commands, and the containers' own work answering probes: httpd forks per connection), and both.")
	if *rivals == "" {
		return
	}
	fmt.Printf("\nexec of /bin/true (static busybox) in a running busybox container, CPU per exec (the CLI and all it starts), %d each:\n", rivalExecs)
	for _, rt := range strings.Split(*rivals, ",") {
		per, err := rivalExec(rt, *shim, *busybox, filepath.Join(*work, "rival-"+rt))
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s exec: %v\n", rt, err)
			os.Exit(1)
		}
		fmt.Printf("%-5s %14.3f ms\n", rt, float64(per)/1e6)
	}
}

// rivalExecs is how many execs rivalExec times.
const rivalExecs = 50

// rivalExec runs a busybox container (sleep) with OCI runtime rt and
// returns the CPU of one `rt exec ID /bin/true`, the runtime's CLI and
// every process it starts (this process's reaped children).
func rivalExec(rt, shim, busybox, dir string) (time.Duration, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	b, err := bundle.Make(dir, busybox, []string{"/bin/sleep", "100000"})
	if err != nil {
		return 0, err
	}
	id := fmt.Sprintf("probebench-%s-%d", rt, os.Getpid())
	root := filepath.Join(dir, "state")
	command := func(args ...string) *exec.Cmd {
		c := exec.Command(rt, append([]string{"--root", root}, args...)...)
		if rt == "crun" && shim != "" {
			c.Env = append(os.Environ(), "LD_PRELOAD="+shim)
		}
		return c
	}
	// run -d: the container keeps its stdio, so a file, not a pipe that
	// would never close.
	logf, err := os.Create(filepath.Join(dir, "run.log"))
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	run := command("run", "-d", "--bundle", b, id)
	run.Stdout, run.Stderr = logf, logf
	if err := run.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		return 0, fmt.Errorf("run: %v: %s", err, out)
	}
	before, _ := os.ReadDir("/sys/fs/cgroup")
	defer func() {
		command("delete", "--force", id).Run()
		cleanCgroups(id, before)
	}()
	c0 := childCPU()
	for range rivalExecs {
		if out, err := command("exec", id, "/bin/true").CombinedOutput(); err != nil {
			return 0, fmt.Errorf("exec: %v: %s", err, out)
		}
	}
	return (childCPU() - c0) / rivalExecs, nil
}

// cleanCgroups removes what a rival runtime may leave of container id's
// cgroups (crun 1.8 behind the hybrid shim leaves its unified cgroup) and
// the empty directories it made on the /sys/fs/cgroup tmpfs for
// controllers the host does not mount (hugetlb, net_cls, ...): only
// directories that were not there before, are not mount points and are
// empty.
func cleanCgroups(id string, before []os.DirEntry) {
	was := map[string]bool{}
	for _, e := range before {
		was[e.Name()] = true
	}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		dir := filepath.Join("/sys/fs/cgroup", e.Name())
		os.Remove(filepath.Join(dir, id)) // rmdir: an empty cgroup only
		if !was[e.Name()] && e.IsDir() && !isMountPoint(dir) {
			os.Remove(dir) // rmdir: empty only
		}
	}
}

// isMountPoint says whether dir is a mount point (another device than its
// parent's).
func isMountPoint(dir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(filepath.Dir(dir), &b) != nil {
		return true // when in doubt, leave it
	}
	return a.Dev != b.Dev
}

// childCPU is the CPU of this process's reaped children.
func childCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// manifest is container name's: busybox httpd on 8080 in its own network
// namespace, probed by kind. The exec
// probe runs busybox's true, the very command and binary the rivals'
// exec runs in their bundle.
func manifest(name, busybox, kind string, interval time.Duration) string {
	cmd := `["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/"]`
	health := ""
	switch kind {
	case "http":
		health = fmt.Sprintf("  health: {http: {port: 8080, path: /etc/hostname}, interval: %s}\n", interval)
	case "tcp":
		health = fmt.Sprintf("  health: {tcp: {port: 8080}, interval: %s}\n", interval)
	case "exec":
		health = fmt.Sprintf("  health: {exec: [%s, \"true\"], interval: %s}\n", busybox, interval)
	}
	return fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata: {name: %s}
spec:
  root: {path: /, readonly: true}
  command: %s
  user: "65534:65534"
  network: private
  stop: {signal: SIGKILL, timeout: 1s}
%s`, name, cmd, health)
}

// run measures one kind: the daemon's CPU over the window and the probes
// run in it.
// usage is CPU used by the daemon's cgroup and by its containers'.
type usage struct{ daemon, containers time.Duration }

func run(bin, busybox, dir, kind string, n int, interval, window time.Duration) (usage, int, error) {
	manifests, state := filepath.Join(dir, "manifests"), filepath.Join(dir, "state")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		return usage{}, 0, err
	}
	for i := range n {
		name := fmt.Sprintf("probe-%s-%d", kind, i)
		if err := os.WriteFile(filepath.Join(manifests, name+".yaml"), []byte(manifest(name, busybox, kind, interval)), 0o644); err != nil {
			return usage{}, 0, err
		}
	}
	cmd := exec.Command(bin, "run", "--manifests", manifests, "--state", state, "--log-dir", filepath.Join(dir, "logs"),
		"--image-root", filepath.Join(dir, "images"), "--insecure-manifests")
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return usage{}, 0, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cgDir, removeCg, err := daemonCgroup(fmt.Sprintf("probebench-%d-%s", os.Getpid(), kind))
	if err != nil {
		return usage{}, 0, err
	}
	defer removeCg()
	if err := cmd.Start(); err != nil {
		return usage{}, 0, err
	}
	if err := os.WriteFile(filepath.Join(cgDir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return usage{}, 0, fmt.Errorf("moving the daemon into %s: %w", cgDir, err)
	}
	defer func() {
		// Remove the containers, then stop the daemon.
		for i := range n {
			os.Remove(filepath.Join(manifests, fmt.Sprintf("probe-%s-%d.yaml", kind, i)))
		}
		waitStatus(state, 5*time.Minute, func(r *daemon.Report) bool { return len(r.Containers) == 0 })
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		// The daemon leaves its shared rootfs mount for its next run.
		unix.Unmount(filepath.Join(state, "rootfs"), unix.MNT_DETACH)
	}()
	want := "healthy"
	if kind == "none" {
		want = "none"
	}
	if err := waitStatus(state, 10*time.Minute, func(r *daemon.Report) bool {
		if len(r.Containers) != n {
			return false
		}
		for _, c := range r.Containers {
			if c.Phase != "running" || c.Health != want {
				return false
			}
		}
		return true
	}); err != nil {
		return usage{}, 0, err
	}
	var r daemon.Report
	if err := daemon.Query(context.Background(), state, "/v1/status", &r); err != nil {
		return usage{}, 0, err
	}
	dm, cm := &cpuMeter{files: []string{cpuFile(cgDir)}}, &cpuMeter{files: []string{cpuFile(cgroupCPUDir(r.CgroupParent))}}
	time.Sleep(2 * interval) // past the converge and the first probes
	d0, err1 := dm.read()
	c0, err2 := cm.read()
	if err := errors.Join(err1, err2); err != nil {
		return usage{}, 0, err
	}
	time.Sleep(window)
	d1, err1 := dm.read()
	c1, err2 := cm.read()
	if err := errors.Join(err1, err2); err != nil {
		return usage{}, 0, err
	}
	probes := 0
	if kind != "none" {
		probes = int(float64(n) * float64(window) / float64(interval))
	}
	return usage{d1 - d0, c1 - c0}, probes, nil
}

// cpuMeter reads the CPU of everything a probe costs: the daemon (moved
// into a cgroup of the bench's own as it starts) and the containers'
// cgroups under the daemon's cgroup parent, where exec stages, probe
// servers and probe commands run once they joined a container. Each CPU
// tick is charged to the one cgroup its task was in: nothing is counted
// twice, whoever reaps whom.
type cpuMeter struct {
	files []string // cpuacct.usage (v1, ns) or cpu.stat (v2, usage_usec)
}

// cgroupCPUDir is the directory of cgroup path (relative to the
// hierarchy) where CPU usage is read: the cpuacct hierarchy on v1, the
// unified one on v2.
func cgroupCPUDir(path string) string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return filepath.Join("/sys/fs/cgroup", path)
	}
	return filepath.Join("/sys/fs/cgroup/cpuacct", path)
}

func cpuFile(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, "cpuacct.usage")); err == nil {
		return filepath.Join(dir, "cpuacct.usage")
	}
	return filepath.Join(dir, "cpu.stat")
}

// read is the CPU used so far.
func (m *cpuMeter) read() (time.Duration, error) {
	var total time.Duration
	for _, f := range m.files {
		data, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		if strings.HasSuffix(f, "cpuacct.usage") {
			ns, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", f, err)
			}
			total += time.Duration(ns)
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
				us, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("%s: %w", f, err)
				}
				total += time.Duration(us) * time.Microsecond
			}
		}
	}
	return total, nil
}

// daemonCgroup makes a cgroup for the daemon (removed by the returned
// function, after the daemon ended).
func daemonCgroup(name string) (string, func(), error) {
	dir := cgroupCPUDir(name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", nil, err
	}
	return dir, func() {
		// The daemon's monitors leave with their containers.
		for deadline := time.Now().Add(10 * time.Second); os.Remove(dir) != nil && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := os.Stat(dir); err == nil {
			fmt.Fprintf(os.Stderr, "probebench: cgroup %s left behind\n", dir)
		}
	}, nil
}
func waitStatus(state string, timeout time.Duration, cond func(*daemon.Report) bool) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		var r daemon.Report
		if err := daemon.Query(context.Background(), state, "/v1/status", &r); err == nil {
			if cond(&r) {
				return nil
			}
			phases := map[string]int{}
			for _, c := range r.Containers {
				phases[c.Phase+"/"+c.Health]++
			}
			last = fmt.Sprint(phases)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %s (last: %s)", timeout, last)
}
