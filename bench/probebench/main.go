// Command probebench measures what spec.health's probes cost the daemon
// (issue 17): it runs `reconciled run` with N containers, all probed
// every interval by one kind of probe (none, http, tcp, exec), waits until
// every one is healthy, and reports the daemon's CPU over a window: per
// probe, and as a share of one core. exec probes run a process; their CPU
// (the exec stage and the command, the daemon's children) is counted from
// the daemon's cutime+cstime. Run it through bench/probe.sh.
package main

import (
	"context"
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
	fmt.Printf("%-5s %12s %14s %12s\n", "kind", "probes", "CPU/probe", "core %")
	var base time.Duration
	for _, kind := range strings.Split(*kinds, ",") {
		cpu, probes, err := run(*bin, filepath.Join(*work, kind), kind, *n, *interval, *window)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", kind, err)
			os.Exit(1)
		}
		share := 100 * float64(cpu) / float64(*window)
		if kind == "none" {
			base = cpu
			fmt.Printf("%-5s %12s %14s %11.3f%%\n", kind, "-", "-", share)
			continue
		}
		per := "-"
		if probes > 0 {
			per = fmt.Sprintf("%.3f ms", float64(cpu-base)/float64(probes)/1e6)
		}
		fmt.Printf("%-5s %12d %14s %11.3f%%\n", kind, probes, per, share)
	}
	fmt.Println("CPU/probe is the daemon's CPU (its children's included) over the window less that of the run without probes, per probe.")
	if *rivals == "" {
		return
	}
	fmt.Printf("\nexec of /bin/true in a running busybox container, CPU per exec (the CLI and all it starts), %d each:\n", rivalExecs)
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
	defer command("delete", "--force", id).Run()
	c0 := childCPU()
	for range rivalExecs {
		if out, err := command("exec", id, "/bin/true").CombinedOutput(); err != nil {
			return 0, fmt.Errorf("exec: %v: %s", err, out)
		}
	}
	return (childCPU() - c0) / rivalExecs, nil
}

// childCPU is the CPU of this process's reaped children.
func childCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// manifest is container name probed by kind: httpd on 8080 in its own
// network namespace, or a sleep probed by exec /bin/true.
func manifest(name, kind string, interval time.Duration) string {
	cmd := `["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/"]`
	health := ""
	switch kind {
	case "http":
		health = fmt.Sprintf("  health: {http: {port: 8080, path: /etc/hostname}, interval: %s}\n", interval)
	case "tcp":
		health = fmt.Sprintf("  health: {tcp: {port: 8080}, interval: %s}\n", interval)
	case "exec":
		health = fmt.Sprintf("  health: {exec: [/bin/true], interval: %s}\n", interval)
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
func run(bin, dir, kind string, n int, interval, window time.Duration) (time.Duration, int, error) {
	manifests, state := filepath.Join(dir, "manifests"), filepath.Join(dir, "state")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		return 0, 0, err
	}
	for i := range n {
		name := fmt.Sprintf("probe-%s-%d", kind, i)
		if err := os.WriteFile(filepath.Join(manifests, name+".yaml"), []byte(manifest(name, kind, interval)), 0o644); err != nil {
			return 0, 0, err
		}
	}
	cmd := exec.Command(bin, "run", "--manifests", manifests, "--state", state, "--log-dir", filepath.Join(dir, "logs"),
		"--image-root", filepath.Join(dir, "images"), "--insecure-manifests")
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return 0, 0, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return 0, 0, err
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
		return 0, 0, err
	}
	time.Sleep(2 * interval) // past the converge and the first probes
	c0, err := cpuOf(cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	time.Sleep(window)
	c1, err := cpuOf(cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	probes := 0
	if kind != "none" {
		probes = int(float64(n) * float64(window) / float64(interval))
	}
	return c1 - c0, probes, nil
}

// cpuOf is pid's CPU time: its own (the process CPU clock, exited threads
// included) plus its reaped children's (cutime+cstime, clock ticks).
func cpuOf(pid int) (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(int32((^pid)<<3|2), &ts); err != nil {
		return 0, os.NewSyscallError("clock_gettime", err)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	cu, _ := strconv.ParseInt(f[13], 10, 64)
	cs, _ := strconv.ParseInt(f[14], 10, 64)
	return time.Duration(ts.Nano()) + time.Duration(cu+cs)*10*time.Millisecond, nil
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
