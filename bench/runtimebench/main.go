package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/bench/internal/bundle"
	"reconciled.dev/reconciled/bench/internal/host"
	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/proc"
)

type runtime struct {
	name string
	// api, when set, runs the operations in this process through the
	// executor package, as the daemon does, instead of through a CLI.
	api *executor.Runtime

	argv   []string // binary and global flags
	env    []string // extra environment
	after  func(id string)
	maxRSS int64 // KiB, over every invocation
	times  map[string][]time.Duration
}

func main() {
	// This binary is also the in-process runtime's container init and
	// monitor: the executor re-executes it for those stages.
	executor.MaybeRunStage()
	var (
		n        = flag.Int("n", 100, "containers per runtime and operation")
		held     = flag.Int("held", 20, "created-not-started containers for the memory figure")
		ours     = flag.String("reconciled", "bin/reconciled", "path to the reconciled binary")
		base     = flag.String("base", "", "another reconciled binary (an earlier build), run as reconciled-base beside the others for an A/B comparison in the same run")
		shim     = flag.String("nohybrid", "", "LD_PRELOAD shim that lets crun 1.8 run on a hybrid cgroup layout")
		busybox  = flag.String("busybox", "/bin/busybox", "static busybox for the bundle")
		work     = flag.String("work", "", "work directory (default: a new one under $TMPDIR)")
		peak     = flag.String("peakrss", "", "bench/peakrss.c built, for the CLIs' peak RSS (empty: not measured)")
		runtimes = flag.String("runtimes", "reconciled,reconciled-api,reconciled-api-cold,runc,crun", "which runtimes to compare (reconciled-api: the executor package in-process with a spare monitor and init, as the daemon uses it; reconciled-api-cold: in-process without spares)")
	)
	flag.Parse()
	peakRSS = *peak
	ctx, stop := context.WithTimeout(context.Background(), 20*time.Minute)
	defer stop()
	names := strings.Split(*runtimes, ",")
	if *base != "" {
		baseBinary = *base
		names = append([]string{"reconciled-base"}, names...)
	}
	if err := run(ctx, *n, *held, *ours, *shim, *busybox, *work, names); err != nil {
		fmt.Fprintln(os.Stderr, "runtimebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n, held int, ours, shim, busybox, work string, names []string) error {
	// Orphaned container processes (runc init, our monitors) are reparented
	// to us, so they can be found and counted as our descendants.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming a subreaper: %w", err)
	}
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "runtimebench-"); err != nil {
			return err
		}
		defer os.RemoveAll(work) // holds no mounts: only state dirs and the bundle
	}
	var err error
	if stderrFile, err = os.Create(filepath.Join(work, "stderr.log")); err != nil {
		return err
	}
	// State roots live on a tmpfs, as /run is on every host these runtimes
	// are made for (runc's default root is /run/runc, ours
	// /run/reconciled/runtime): a disk's fsync is not what is compared.
	stateDir := filepath.Join(work, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", stateDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=700"); err != nil {
		return fmt.Errorf("mounting a tmpfs for the state roots: %w", err)
	}
	defer func() {
		if err := unix.Unmount(stateDir, unix.MNT_DETACH); err != nil {
			fmt.Fprintln(os.Stderr, "runtimebench: unmounting", stateDir, err)
		}
	}()
	defer stderrFile.Close()
	ours, err = filepath.Abs(ours)
	if err != nil {
		return err
	}
	sleepBundle, err := bundle.Make(filepath.Join(work, "bundle-sleep"), busybox, []string{"/bin/sleep", "1000"})
	if err != nil {
		return err
	}
	trueBundle, err := bundle.Make(filepath.Join(work, "bundle-true"), busybox, []string{"/bin/true"})
	if err != nil {
		return err
	}
	var rts []*runtime
	for _, name := range names {
		root := filepath.Join(stateDir, name)
		rt := &runtime{name: name, times: map[string][]time.Duration{}}
		switch name {
		case "reconciled":
			rt.argv = []string{ours, "runtime", "--root", root}
		case "reconciled-base":
			rt.argv = []string{baseBinary, "runtime", "--root", root}
		case "reconciled-api", "reconciled-api-cold":
			// The daemon keeps a spare monitor and init ready
			// (executor.WithSpares(1)); -cold starts them in every create.
			opt := executor.WithSpares(1)
			if name == "reconciled-api-cold" {
				opt = executor.WithReaper()
			}
			api, err := executor.New(root, opt)
			if err != nil {
				return err
			}
			defer api.Close()
			rt.api = api
		case "runc":
			rt.argv = []string{"runc", "--root", root}
		case "crun":
			rt.argv = []string{"crun", "--root", root}
			if shim != "" {
				rt.env = []string{"LD_PRELOAD=" + shim}
			}
			// In that mode crun leaves an empty cgroup behind in the
			// unified hierarchy (../shared/bench-aids/README.md).
			rt.after = func(id string) { _ = os.Remove(filepath.Join("/sys/fs/cgroup/unified", id)) }
		default:
			return fmt.Errorf("unknown runtime %q", name)
		}
		rts = append(rts, rt)
	}

	// The runtimes take turns, in reverse order every other round: the
	// first of a round was 0.7 ms slower per cycle than the same binary
	// after it (2-core VM), which favoured the later ones.
	for i := 0; i < n; i++ {
		for k := range rts {
			rt := rts[k]
			if i%2 == 1 {
				rt = rts[len(rts)-1-k]
			}
			id := fmt.Sprintf("bench-%s-%d", rt.name, i)
			if err := rt.cycle(ctx, id, sleepBundle); err != nil {
				return fmt.Errorf("%s: %w", rt.name, err)
			}
			rid := fmt.Sprintf("bench-run-%s-%d", rt.name, i)
			if _, err := rt.timed(ctx, "run", "run", "--bundle", trueBundle, rid); err != nil {
				return fmt.Errorf("%s run: %w", rt.name, err)
			}
			if rt.argv != nil && rt.argv[0] != "runc" && rt.argv[0] != "crun" || rt.api != nil {
				// Our run removes the container on exit like runc's; be
				// tolerant if a version does not.
				_ = rt.plain(ctx, "delete", "--force", rid)
			}
			if rt.after != nil {
				rt.after(rid)
			}
		}
	}

	for _, rt := range rts {
		if rt.api == nil {
			if err := rt.measureRSS(ctx, sleepBundle); err != nil {
				return fmt.Errorf("%s peak RSS: %w", rt.name, err)
			}
		}
	}

	held_ := map[string]float64{}
	for _, rt := range rts {
		kib, err := rt.heldMemory(ctx, held, sleepBundle)
		if err != nil {
			return fmt.Errorf("%s held memory: %w", rt.name, err)
		}
		held_[rt.name] = kib
	}
	report(rts, held_, n, held)
	return nil
}

// cycle creates, starts, kills and deletes one container, timing each step.
// Waiting for the process to be gone after kill is not timed.
func (rt *runtime) cycle(ctx context.Context, id, bundle string) error {
	if _, err := rt.timed(ctx, "create", "create", "--bundle", bundle, id); err != nil {
		return err
	}
	pid, err := rt.pid(ctx, id)
	if err != nil {
		return err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	if _, err := rt.timed(ctx, "start", "start", id); err != nil {
		return err
	}
	if _, err := rt.timed(ctx, "kill", "kill", id, "KILL"); err != nil {
		return err
	}
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, 10000)
		if err == nil {
			break
		}
		if err != unix.EINTR { // a signal (SIGCHLD of a reaped monitor) cuts poll short
			return fmt.Errorf("waiting for %s to exit: %w", id, err)
		}
	}
	// The runtimes learn of the exit on their own; give them the moment a
	// reaper needs so delete does not race the exit bookkeeping.
	for i := 0; i < 200; i++ {
		st, err := rt.state(ctx, id)
		if err == nil && st == "stopped" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := rt.timed(ctx, "delete", "delete", id); err != nil {
		return err
	}
	if rt.after != nil {
		rt.after(id)
	}
	return nil
}

func (rt *runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, rt.argv[0], append(append([]string{}, rt.argv[1:]...), args...)...)
	cmd.Env = append(os.Environ(), rt.env...)
	return cmd // stdio: /dev/null, so no container holds a pipe of ours
}

// stderrFile is where the CLIs write errors. It is a file, not a pipe: a
// created container inherits the CLI's stdio, and a pipe would keep Run
// waiting until the container exits.
var stderrFile *os.File

// peakRSS is the path of the built bench/peakrss.c.
var peakRSS string

func (rt *runtime) timed(ctx context.Context, op string, args ...string) (time.Duration, error) {
	if rt.api != nil {
		start := time.Now()
		err := rt.call(ctx, args)
		d := time.Since(start)
		if err != nil {
			return d, fmt.Errorf("%s %s: %w", rt.name, strings.Join(args, " "), err)
		}
		rt.times[op] = append(rt.times[op], d)
		return d, nil
	}
	cmd := rt.command(ctx, args...)
	cmd.Stderr = stderrFile
	off, _ := stderrFile.Seek(0, 2)
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s %s: %w: %s", rt.name, strings.Join(args, " "), err, stderrSince(off))
	}
	rt.times[op] = append(rt.times[op], d)
	return d, nil
}

// call runs one operation, given as CLI arguments, through the executor
// package in this process.
func (rt *runtime) call(ctx context.Context, args []string) error {
	id := args[len(args)-1]
	if args[0] == "kill" {
		id = args[1]
	}
	switch args[0] {
	case "create":
		return rt.api.Create(ctx, id, args[2], executor.CreateOptions{})
	case "start":
		return rt.api.Start(ctx, id)
	case "kill":
		return rt.api.Kill(ctx, id, unix.SIGKILL)
	case "delete":
		return rt.api.Delete(ctx, id, len(args) > 2 && args[1] == "--force")
	case "run":
		if err := rt.api.Create(ctx, id, args[2], executor.CreateOptions{}); err != nil {
			return err
		}
		if err := rt.api.Start(ctx, id); err != nil {
			return err
		}
		if _, err := rt.api.Wait(ctx, id); err != nil {
			return err
		}
		return rt.api.Delete(ctx, id, false)
	}
	return fmt.Errorf("unknown operation %q", args[0])
}

func (rt *runtime) plain(ctx context.Context, args ...string) error {
	if rt.api != nil {
		return rt.call(ctx, args)
	}
	cmd := rt.command(ctx, args...)
	cmd.Stderr = stderrFile
	off, _ := stderrFile.Seek(0, 2)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", rt.name, strings.Join(args, " "), err, stderrSince(off))
	}
	return nil
}

func stderrSince(off int64) string {
	buf := make([]byte, 4096)
	n, _ := stderrFile.ReadAt(buf, off)
	return strings.TrimSpace(string(buf[:n]))
}

type ociState struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

func (rt *runtime) stateOf(ctx context.Context, id string) (ociState, error) {
	if rt.api != nil {
		st, err := rt.api.State(ctx, id)
		if err != nil {
			return ociState{}, err
		}
		return ociState{Status: string(st.Status), Pid: st.Pid}, nil
	}
	cmd := rt.command(ctx, "state", id)
	out, err := cmd.Output()
	if err != nil {
		return ociState{}, fmt.Errorf("%s state %s: %w", rt.name, id, err)
	}
	var st ociState
	if err := json.Unmarshal(out, &st); err != nil {
		return ociState{}, fmt.Errorf("%s state %s: %w: %q", rt.name, id, err, out)
	}
	return st, nil
}

func (rt *runtime) pid(ctx context.Context, id string) (int, error) {
	st, err := rt.stateOf(ctx, id)
	if err != nil {
		return 0, err
	}
	if st.Pid <= 0 {
		return 0, fmt.Errorf("%s state %s: no pid", rt.name, id)
	}
	return st.Pid, nil
}

func (rt *runtime) state(ctx context.Context, id string) (string, error) {
	st, err := rt.stateOf(ctx, id)
	return st.Status, err
}

// measureRSS runs a few create/start/kill/delete cycles, untimed, each CLI
// call under bench/peakrss.c, and keeps the highest ru_maxrss. Go starts
// children with vfork, and the kernel then counts the parent's (this
// harness's) RSS as the child's peak; peakrss forks for real.
func (rt *runtime) measureRSS(ctx context.Context, bundle string) error {
	if peakRSS == "" {
		rt.maxRSS = -1
		return nil
	}
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("bench-rss-%s-%d", rt.name, i)
		for _, args := range [][]string{{"create", "--bundle", bundle, id}, {"start", id}, {"kill", id, "KILL"}, {"delete", "--force", id}} {
			argv := append(append([]string{}, rt.argv...), args...)
			cmd := exec.CommandContext(ctx, peakRSS, argv...)
			cmd.Env = append(os.Environ(), rt.env...)
			cmd.Stderr = stderrFile
			r, w, err := os.Pipe()
			if err != nil {
				return err
			}
			cmd.ExtraFiles = []*os.File{w} // fd 3
			off, _ := stderrFile.Seek(0, 2)
			err = cmd.Start()
			w.Close()
			if err != nil {
				r.Close()
				return err
			}
			out, _ := io.ReadAll(r)
			r.Close()
			if err := cmd.Wait(); err != nil && args[0] != "kill" {
				return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, stderrSince(off))
			}
			if kib, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && kib > rt.maxRSS {
				rt.maxRSS = kib
			}
			if args[0] == "kill" {
				time.Sleep(20 * time.Millisecond) // let it exit before delete
			}
		}
		if rt.after != nil {
			rt.after(id)
		}
	}
	return nil
}

// heldMemory creates k containers without starting them and returns the
// proportional set size of all our descendants (the runtime's processes
// that stay behind: runc init, crun's waiting process, our monitor and init)
// per container, in KiB.
func (rt *runtime) heldMemory(ctx context.Context, k int, bundle string) (float64, error) {
	before, err := descendantPss()
	if err != nil {
		return 0, err
	}
	var ids []string
	defer func() {
		for _, id := range ids {
			_ = rt.plain(context.WithoutCancel(ctx), "delete", "--force", id)
			if rt.after != nil {
				rt.after(id)
			}
		}
	}()
	for i := 0; i < k; i++ {
		id := fmt.Sprintf("bench-held-%s-%d", rt.name, i)
		if err := rt.plain(ctx, "create", "--bundle", bundle, id); err != nil {
			return 0, err
		}
		ids = append(ids, id)
	}
	time.Sleep(200 * time.Millisecond) // let the processes settle into their wait
	after, err := descendantPss()
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(k), nil
}

// descendantPss sums Pss (KiB) over every descendant of this process.
func descendantPss() (int64, error) {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	parent := map[int]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := proc.ReadStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		parent[pid] = st.PPID
	}
	var total int64
	for pid := range parent {
		if pid == self || !descends(pid, self, parent) {
			continue
		}
		kib, err := pss(pid)
		if err != nil {
			continue // exited meanwhile
		}
		total += kib
	}
	return total, nil
}

func descends(pid, ancestor int, parent map[int]int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		pid = parent[pid]
		if pid == ancestor {
			return true
		}
	}
	return false
}

// baseBinary is the -base binary: reconciled-base's.
var baseBinary string

func pss(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no Pss line")
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration{}, ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/1e6) }

func report(rts []*runtime, held map[string]float64, n, k int) {
	fmt.Printf("\n%s\n%d containers per runtime and operation; busybox bundle; times in ms (median / p95)\n\n", host.Describe(), n)
	fmt.Printf("%-22s", "operation")
	for _, rt := range rts {
		fmt.Printf("%22s", rt.name)
	}
	fmt.Println()
	ops := []string{"create", "start", "kill", "delete", "run"}
	for _, op := range ops {
		fmt.Printf("%-22s", op)
		for _, rt := range rts {
			fmt.Printf("%22s", ms(percentile(rt.times[op], 0.5))+" / "+ms(percentile(rt.times[op], 0.95)))
		}
		fmt.Println()
	}
	cycle := map[string]time.Duration{}
	fmt.Printf("%-22s", "create+start+kill+del")
	for _, rt := range rts {
		var sum time.Duration
		for _, op := range ops[:4] {
			sum += percentile(rt.times[op], 0.5)
		}
		cycle[rt.name] = sum
		fmt.Printf("%22s", ms(sum))
	}
	fmt.Println()
	fmt.Printf("%-22s", "peak CLI RSS (MiB)")
	for _, rt := range rts {
		if rt.api != nil || rt.maxRSS < 0 {
			fmt.Printf("%22s", "-")
			continue
		}
		fmt.Printf("%22.1f", float64(rt.maxRSS)/1024)
	}
	fmt.Println()
	fmt.Printf("%-22s", fmt.Sprintf("held/created (MiB,%d)", k))
	for _, rt := range rts {
		fmt.Printf("%22.2f", held[rt.name]/1024)
	}
	fmt.Println()
	if c, ok := cycle["crun"]; ok && c > 0 {
		fmt.Println()
		// The goals: the command line no slower than crun, the
		// executor as the daemon uses it (spares) a fifth of it (issue
		// 19), and without spares half (the first benchmark's).
		for _, g := range []struct {
			name   string
			target float64
		}{{"reconciled-base", 1.0}, {"reconciled", 1.0}, {"reconciled-api", 0.2}, {"reconciled-api-cold", 0.5}} {
			if o, ok := cycle[g.name]; ok {
				fmt.Printf("%s cycle / crun cycle = %.2f (target <= %.2f)\n", g.name, float64(o)/float64(c), g.target)
			}
		}
	}
}
