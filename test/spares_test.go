package test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/testutil"
)

// spareRuntime returns a Runtime on r's state root that keeps one spare
// per kind of container, closed when the test ends (Close may come
// earlier too).
func spareRuntime(t *testing.T, r *rt) *executor.Runtime {
	t.Helper()
	api, err := executor.New(r.root, executor.WithSpares(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Close() })
	return api
}

// spareMonitors lists this process's spare monitors: children whose
// cmdline is "reconciled-monitor" with argv[1] still blank (no container).
func spareMonitors(t *testing.T) []int {
	t.Helper()
	var pids []int
	for _, pid := range children(os.Getpid()) {
		args := cmdline(pid)
		if len(args) >= 2 && args[0] == "reconciled-monitor" && strings.TrimSpace(args[1]) == "" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// children lists pid's children (each thread's: a Go process forks from
// any of its threads).
func children(pid int) []int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var pids []int
	for _, task := range tasks {
		data, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids
}

func cmdline(pid int) []string {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

// waitTitled waits until the monitor of container id, while it runs, has
// titled itself with id: it does so once "created" reaches it, after
// Create returned, and spareMonitors takes it for a spare's until then.
func waitTitled(t *testing.T, api *executor.Runtime, id string) {
	t.Helper()
	st, err := api.State(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, id+"'s monitor titled", func() bool {
		args := cmdline(st.MonitorPid)
		return !alive(st.MonitorPid) || (len(args) >= 2 && args[1] == id)
	})
}

// waitSpare waits until a spare monitor whose init is (newNet) or is not
// in a network namespace of its own is ready, and returns the monitor's
// PID and the init's.
func waitSpare(t *testing.T, newNet bool) (int, int) {
	t.Helper()
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	var mon, init int
	waitFor(t, "a spare monitor with its init", func() bool {
		for _, m := range spareMonitors(t) {
			kids := children(m)
			if len(kids) != 1 {
				continue
			}
			if net, err := os.Readlink("/proc/" + strconv.Itoa(kids[0]) + "/ns/net"); err == nil && (net != hostNet) == newNet {
				mon, init = m, kids[0]
				return true
			}
		}
		return false
	})
	return mon, init
}

// A Runtime with spares creates containers from monitors and inits it
// started ahead of time. What a user sees must not differ: the container's
// own stdio, namespaces, hostname and exit status; ps names the container
// a monitor serves; a spare that died is not used; Close leaves no spare
// behind.
func TestSpares(t *testing.T) {
	r := newRT(t)
	api := spareRuntime(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}

	// run creates id from b with stdin and files for stdout and stderr,
	// starts it, waits for it, and returns its state at create and what it
	// wrote.
	run := func(id, b, stdin string) (executor.State, string, string, *executor.State) {
		t.Helper()
		dir := t.TempDir()
		out, _ := os.Create(filepath.Join(dir, "out"))
		errf, _ := os.Create(filepath.Join(dir, "err"))
		defer out.Close()
		defer errf.Close()
		in, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		w.WriteString(stdin)
		w.Close()
		defer in.Close()
		t.Cleanup(func() { api.Delete(context.Background(), id, true) })
		if err := api.Create(ctx, id, b, executor.CreateOptions{Stdin: in, Stdout: out, Stderr: errf}); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
		created, err := api.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		// The monitor learns its container with "created", the last
		// thing a create tells it, and titles itself then: wait for
		// that (and, with the Go monitor, for its exec of the reaper,
		// which keeps the title: the cmdline reads empty meanwhile).
		var args []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if args = cmdline(created.MonitorPid); len(args) > 1 && args[1] == id {
				break
			}
		}
		if len(args) < 2 || args[0] != "reconciled-monitor" || args[1] != id {
			t.Errorf("%s: monitor %d has cmdline %q, want reconciled-monitor %s", id, created.MonitorPid, args, id)
		}
		// Its init is in the container's cgroup in every hierarchy, a
		// spare's too (its own cgroup renamed on v1; on a hybrid host's
		// cgroup2 hierarchy moved in the background, soon).
		waitFor(t, id+"'s init in its own cgroup everywhere", func() bool {
			return inCgroupEverywhere(created.Pid, "/"+id)
		})
		if err := api.Start(ctx, id); err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		done, err := api.Wait(ctx, id)
		if err != nil {
			t.Fatalf("wait %s: %v", id, err)
		}
		o, _ := os.ReadFile(out.Name())
		e, _ := os.ReadFile(errf.Name())
		return *created, string(o), string(e), done
	}
	// /proc is the container's (a spare's init opened its context ahead):
	// its PID 1 is this shell, and /proc/self is its own.
	script := "cat; echo to-stderr >&2; hostname; readlink /proc/self/ns/net; echo \"pid1=$(cat /proc/1/comm) self=$(readlink /proc/self) shell=$$\"; exit 3"
	check := func(id, out, errOut string, done *executor.State, wantHostNet bool) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || lines[0] != "from-stdin-"+id || lines[1] != "reconciled" {
			t.Errorf("%s: stdout %q, want its stdin, then the hostname reconciled, then its net namespace, then its /proc", id, out)
		} else if !strings.HasPrefix(lines[3], "pid1=sh self=") || !strings.HasSuffix(lines[3], " shell=1") {
			t.Errorf("%s: /proc shows %q, want the container's PID namespace (PID 1 the shell)", id, lines[3])
		} else if (lines[2] == hostNet) != wantHostNet {
			t.Errorf("%s: net namespace %s, host's %s, want host's: %v", id, lines[2], hostNet, wantHostNet)
		}
		if errOut != "to-stderr\n" {
			t.Errorf("%s: stderr %q", id, errOut)
		}
		if !done.Exited || done.ExitCode != 3 {
			t.Errorf("%s: exit %+v, want exited 3", id, done)
		}
	}

	b := bundle(t, nil, "sh", "-c", script)
	// The first container of its kind finds no spare; one is made after.
	_, out, errOut, done := run("spares-first", b, "from-stdin-spares-first\n")
	check("spares-first", out, errOut, done, false)
	mon, spareInit := waitSpare(t, true)
	// A spare's init waits in a cgroup of its own (but on a pure cgroup
	// v2 host, where a cgroup cannot be renamed), beside the containers'.
	if !pureV2() {
		waitFor(t, "the spare init in a spare cgroup everywhere", func() bool {
			return inCgroupEverywhere(spareInit, "/"+cgroups.SparePrefix)
		})
	}
	created, out, errOut, done := run("spares-second", b, "from-stdin-spares-second\n")
	if created.MonitorPid != mon {
		t.Errorf("spares-second: monitor %d, want the spare %d", created.MonitorPid, mon)
	}
	check("spares-second", out, errOut, done, false)

	// Another set of namespaces (the host's network) gets a spare of its
	// own, never one cloned into a new network namespace.
	hostNetBundle := bundle(t, func(s *specs.Spec) {
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.NetworkNamespace
		})
	}, "sh", "-c", script)
	netSpare, _ := waitSpare(t, true)
	created, out, errOut, done = run("spares-hostnet", hostNetBundle, "from-stdin-spares-hostnet\n")
	if created.MonitorPid == netSpare {
		t.Errorf("spares-hostnet took the spare made for a new network namespace")
	}
	check("spares-hostnet", out, errOut, done, true)

	// A spare whose init was killed is passed over.
	mon, init := waitSpare(t, true)
	waitSpare(t, false)
	if err := unix.Kill(init, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	created, out, errOut, done = run("spares-dead", b, "from-stdin-spares-dead\n")
	if created.MonitorPid == mon {
		t.Errorf("spares-dead: created from the spare whose init was killed")
	}
	check("spares-dead", out, errOut, done, false)

	// Close stops every spare and its init.
	left := waitSpares(t, 2)
	api.Close()
	for _, m := range left {
		waitGone(t, m)
	}
	if s := spareMonitors(t); len(s) != 0 {
		t.Errorf("spare monitors left after Close: %v", s)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroups.DefaultParent + "/" + cgroups.SparePrefix + strconv.Itoa(os.Getpid()) + "-*"); len(left) != 0 {
		t.Errorf("spare cgroups left after Close: %v", left)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup" + cgroups.DefaultParent + "/" + cgroups.SparePrefix + strconv.Itoa(os.Getpid()) + "-*"); len(left) != 0 {
		t.Errorf("spare cgroups left after Close: %v", left)
	}
}

// inCgroupEverywhere says whether every line of /proc/PID/cgroup names a
// cgroup whose path ends in suffix, or, with a suffix ending in '-', whose
// last element starts with it without the leading '/'.
func inCgroupEverywhere(pid int, suffix string) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			return false
		}
		if strings.HasSuffix(suffix, "-") {
			if !strings.HasPrefix(filepath.Base(f[2]), strings.TrimPrefix(suffix, "/")) {
				return false
			}
		} else if !strings.HasSuffix(f[2], suffix) {
			return false
		}
	}
	return true
}

// pureV2 says whether the host has the unified cgroup v2 layout alone.
func pureV2() bool {
	l, err := cgroups.DetectLayout()
	return err == nil && l.Mode() == cgroups.ModeUnified
}

// waitSpares waits for n spare monitors with their inits and returns the
// monitors' and inits' PIDs.
func waitSpares(t *testing.T, n int) []int {
	t.Helper()
	var pids []int
	waitFor(t, strconv.Itoa(n)+" spare monitors", func() bool {
		pids = pids[:0]
		for _, m := range spareMonitors(t) {
			if kids := children(m); len(kids) == 1 {
				pids = append(pids, m, kids[0])
			}
		}
		return len(pids) == 2*n
	})
	return pids
}

// A spare's init gets its configuration before the state is written and
// the cgroup made: when its setup fails meanwhile (a bind mount of a
// missing source), create reports the init's own error and leaves no
// state, no cgroup and no process of that pair behind.
func TestSpareSetupFailure(t *testing.T) {
	r := newRT(t)
	api := spareRuntime(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	good := bundle(t, nil, "true")
	first := testutil.Name(t, 40) + "-first"
	t.Cleanup(func() { api.Delete(context.Background(), first, true) })
	if err := api.Create(ctx, first, good, executor.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", first, err)
	}
	waitTitled(t, api, first)
	mon, init := waitSpare(t, true)

	missing := filepath.Join(t.TempDir(), "no-such-dir")
	limit := int64(32 << 20)
	bad := bundle(t, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: missing, Options: []string{"rbind"}})
	}, "true")
	id := testutil.Name(t, 40) + "-bad"
	t.Cleanup(func() { api.Delete(context.Background(), id, true) })
	err := api.Create(ctx, id, bad, executor.CreateOptions{})
	if err == nil {
		t.Fatal("create with a missing bind source succeeded")
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error does not name the missing source %s: %v", missing, err)
	}
	if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
		t.Errorf("state directory left after the failed create: %v", err)
	}
	for _, h := range []string{"memory", "pids", "cpu", "unified"} {
		if matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", h, "reconciled", id)); len(matches) > 0 {
			t.Errorf("cgroup left after the failed create: %v", matches)
		}
	}
	// The pair it took was the spare, and both of its processes are gone.
	waitGone(t, init)
	waitGone(t, mon)
}

// spawners lists this process's spawners: children whose argv[0] is
// reconciled-spawner.
func spawners() []int {
	var pids []int
	for _, pid := range children(os.Getpid()) {
		if args := cmdline(pid); args[0] == "reconciled-spawner" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// fdTargets lists what pid's descriptors point at, by number.
func fdTargets(t *testing.T, pid int) map[int]string {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		fds[n], _ = os.Readlink(filepath.Join(dir, e.Name()))
	}
	return fds
}

// session is field 6 of /proc/PID/stat.
func session(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	sid, _ := strconv.Atoi(f[3])
	return sid
}

// A Runtime with spares has their monitors forked by a small process of
// its own, the spawner, instead of forking itself. A monitor must look and
// behave as if the Runtime had started it: its child, in a session of its
// own, titled reconciled-monitor and then with its container's ID, holding
// no descriptor of the Runtime or the spawner, recording its container's
// exit. The spawner holds nothing but its socket; one that was killed is
// replaced (the spares keep coming meanwhile); Close ends it, and it is
// reaped.
func TestSpawner(t *testing.T) {
	r := newRT(t)
	api := spareRuntime(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := bundle(t, nil, "sh", "-c", "exit 7")
	// run creates, starts and waits for id, and returns its monitor.
	run := func(id string) int {
		t.Helper()
		t.Cleanup(func() { api.Delete(context.Background(), id, true) })
		if err := api.Create(ctx, id, b, executor.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
		st, err := api.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, id+"'s monitor titled", func() bool {
			args := cmdline(st.MonitorPid)
			return len(args) == 2 && args[0] == "reconciled-monitor" && args[1] == id
		})
		if err := api.Start(ctx, id); err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		done, err := api.Wait(ctx, id)
		if err != nil {
			t.Fatalf("wait %s: %v", id, err)
		}
		if !done.Exited || done.ExitCode != 7 {
			t.Errorf("%s: exit %+v, want exited 7", id, done)
		}
		return st.MonitorPid
	}
	gone := func(pid int) func() bool {
		return func() bool {
			_, err := os.Stat("/proc/" + strconv.Itoa(pid))
			return os.IsNotExist(err) // reaped, not a zombie
		}
	}

	// The first container finds no spare; the spare made after it has its
	// monitor forked by the spawner.
	run("spawner-first")
	mon, _ := waitSpare(t, true)
	sp := spawners()
	if len(sp) != 1 {
		t.Fatalf("spawners: %v, want one", sp)
	}
	for fd, target := range fdTargets(t, sp[0]) {
		if !(fd <= 2 && target == os.DevNull) && !(fd == 3 && strings.HasPrefix(target, "socket:")) {
			t.Errorf("spawner %d holds fd %d (%s), want /dev/null on 0-2 and its socket on 3 only", sp[0], fd, target)
		}
	}
	if s := session(t, mon); s != mon {
		t.Errorf("spare monitor %d is in session %d, want its own", mon, s)
	}
	// The monitor closes the sync socket once its init has it: a socket
	// left is one it should never have had.
	waitFor(t, "the spare monitor holding no socket", func() bool {
		for _, target := range fdTargets(t, mon) {
			if strings.HasPrefix(target, "socket:") {
				return false
			}
		}
		return true
	})
	// It serves the next container (or the one after, if the next came
	// before it was ready).
	served := false
	for i := 0; i < 3 && !served; i++ {
		served = run("spawner-served-"+strconv.Itoa(i)) == mon
	}
	if !served {
		t.Errorf("no container was served by the spare monitor %d", mon)
	}

	// A spawner killed: the next spare is started without it, and a later
	// one by a new spawner.
	if err := unix.Kill(sp[0], unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed spawner reaped", gone(sp[0]))
	var sp2 []int
	for i := 0; i < 5 && len(sp2) == 0; i++ {
		run("spawner-after-kill-" + strconv.Itoa(i))
		waitSpare(t, true)
		sp2 = spawners()
	}
	if len(sp2) != 1 || sp2[0] == sp[0] {
		t.Fatalf("spawners after the first was killed: %v, want a new one", sp2)
	}

	api.Close()
	waitFor(t, "the spawner gone and reaped after Close", gone(sp2[0]))
}
