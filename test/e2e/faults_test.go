package e2e

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// log is the running daemon's output so far.
func (e *env) log() string {
	data, _ := os.ReadFile(e.stderr)
	return string(data)
}

// lowestFreeFd is the lowest descriptor number process pid does not use,
// the least of a few looks (what it opens for a moment does not count).
func lowestFreeFd(t *testing.T, pid int) uint64 {
	t.Helper()
	low := uint64(math.MaxUint64)
	for range 10 {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		used := map[uint64]bool{}
		for _, e := range ents {
			if n, err := strconv.ParseUint(e.Name(), 10, 64); err == nil {
				used[n] = true
			}
		}
		n := uint64(0)
		for used[n] {
			n++
		}
		low = min(low, n)
		time.Sleep(20 * time.Millisecond)
	}
	return low
}

// Faults lose nothing: a daemon that runs out of file descriptors while
// it observes its containers (EMFILE) reports it and tries again later; it
// never reads the failure as containers that exited or were left
// half-created, so none is killed or restarted. Once it has descriptors
// again, it sees them all running as they were.
//
// The daemon's soft limit is lowered while it runs to the lowest
// descriptor it does not use (it opens nothing more), and each
// container's state directory is touched, so that its next look (within
// the cache's TTL, 4s at --resync 1s) reads every container afresh. The
// test then gives the limit back (a soft limit up to the hard one needs
// no CAP_SYS_RESOURCE).
func TestOutOfDescriptorsKillsNothing(t *testing.T) {
	e := newEnv(t)
	e.start("--resync", "1s")
	const n = 10
	var names []string
	for i := range n {
		name := e.name(fmt.Sprintf("c%d", i))
		names = append(names, name)
		e.write(fmt.Sprintf("c%d.yaml", i), manifest(name, sleepForever, ""))
	}
	r := e.client().WaitRunning(t, 60*time.Second, names...)
	pids := map[string]int{}
	for _, name := range names {
		pids[name] = r.Get(name).Pid
	}
	time.Sleep(2 * time.Second) // every container watched and cached
	pid := e.daemon.Process.Pid
	before := len(e.log())

	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatal(err)
	}
	limit := unix.Rlimit{Cur: lowestFreeFd(t, pid), Max: old.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &limit, nil); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
				t.Errorf("give the daemon its open files limit back: %v", err)
			}
		}
	}
	defer restore()
	future := time.Now().Add(time.Hour)
	for _, name := range names {
		if err := os.Chtimes(filepath.Join(e.state, "runtime", name), future, future); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		for name, p := range pids {
			if !alive(p) {
				restore()
				t.Fatalf("%s (pid %d) was killed when the daemon ran out of descriptors (limit %d):\n%s",
					name, p, limit.Cur, e.log()[before:])
			}
		}
		select {
		case <-e.exited:
			t.Fatalf("the daemon exited:\n%s", e.log())
		default:
		}
	}
	restore()
	l := e.log()[before:]
	if !strings.Contains(l, "too many open files") {
		t.Errorf("the daemon (limit %d) never said it ran out of descriptors:\n%s", limit.Cur, l)
	}
	for _, action := range []string{"msg=create", "msg=stop", "msg=delete"} {
		if strings.Contains(l, action) {
			t.Errorf("the daemon acted on a container it could not observe (%s):\n%s", action, l)
			break
		}
	}

	// With descriptors again, everything is seen running as it was. (Not
	// "as wanted": the manifests read while out of descriptors may still
	// be reported invalid, their containers kept; that is the manifest
	// loader's business, not this test's.)
	time.Sleep(2 * time.Second)
	r = e.waitFor("every container seen running", 60*time.Second, func(r *report) bool {
		for _, name := range names {
			if c := r.Get(name); c == nil || c.Phase != "running" || c.Pid <= 0 {
				return false
			}
		}
		return true
	})
	for _, name := range names {
		if c := r.Get(name); c.Pid != pids[name] || c.Restarts != 0 {
			t.Errorf("%s: pid %d, %d restarts; want pid %d, not restarted", name, c.Pid, c.Restarts, pids[name])
		}
	}
}

// Nothing of a container outlives it: a container whose create fails
// leaves no bundle and no record once its manifest is removed; what a
// container that no longer exists left in the state directory is removed
// when the daemon starts, and nothing of a running container is.
func TestFailedCreateLeavesNothing(t *testing.T) {
	e := newEnv(t)
	e.start()
	keep, bad := e.name("keep"), e.name("bad")
	e.write("keep.yaml", manifest(keep, sleepForever, ""))
	e.write("bad.yaml", fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: %s
spec:
  root: {path: /, readonly: true}
  command: ["/nonexistent/reconciled-e2e-no-such-command"]
  user: "65534:65534"
`, bad))
	kept := e.waitRunning(keep, 30*time.Second)
	e.waitFor(bad+" failed to create", 30*time.Second, func(r *report) bool {
		c := r.Get(bad)
		return c != nil && strings.Contains(c.Message, "failed to create")
	})
	if err := os.Remove(filepath.Join(e.manifests, "bad.yaml")); err != nil {
		t.Fatal(err)
	}
	e.waitFor(bad+" gone", 30*time.Second, func(r *report) bool { return r.Get(bad) == nil })
	time.Sleep(time.Second) // a create under way when the manifest went ends
	for _, p := range []string{"bundles/" + bad, "containers/" + bad + ".json", "runtime/" + bad, "status/" + bad + ".json"} {
		if _, err := os.Lstat(filepath.Join(e.state, p)); err == nil {
			t.Errorf("the failed create left %s", p)
		}
	}

	// What a container that no longer exists left, planted while the
	// daemon is down, goes when it starts; the running container keeps
	// all it has.
	e.stop(syscall.SIGTERM)
	ghost := e.name("ghost")
	planted := []string{"bundles/" + ghost + "/config.json", "rw/" + ghost + "/upper/big", "rw/" + ghost + "/work/w",
		"rootfs/" + ghost + "/etc/hostname", "containers/" + ghost + ".json"}
	for _, p := range planted {
		p = filepath.Join(e.state, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.start()
	if c := e.waitRunning(keep, 30*time.Second); c.Pid != kept.Pid || c.Restarts != 0 {
		t.Errorf("%s after the daemon's restart: pid %d, %d restarts; want pid %d", keep, c.Pid, c.Restarts, kept.Pid)
	}
	for _, p := range []string{"bundles/" + ghost, "rw/" + ghost, "rootfs/" + ghost, "containers/" + ghost + ".json"} {
		if _, err := os.Lstat(filepath.Join(e.state, p)); err == nil {
			t.Errorf("%s left after the daemon's start", p)
		}
	}
	for _, p := range []string{"bundles/" + keep + "/config.json", "containers/" + keep + ".json", "runtime/" + keep} {
		if _, err := os.Lstat(filepath.Join(e.state, p)); err != nil {
			t.Errorf("running container's %s: %v", p, err)
		}
	}
}

// Two daemons with their own state directories, each with a container of
// the same name, each keep their own cgroup: the limits of one are not
// the other's, and removing one's container leaves the other's running.
// Each daemon records its cgroup parent and keeps it across a restart.
func TestTwoDaemonsOwnCgroups(t *testing.T) {
	a, b := newEnv(t), newEnv(t)
	b.prefix += "-b" // its leftovers check must not count a's container
	a.start()
	b.start()
	web := a.name("web")
	a.write("web.yaml", manifest(web, sleepForever, "  resources: {memory: 32Mi}\n"))
	b.write("web.yaml", manifest(web, sleepForever, "  resources: {memory: 64Mi}\n"))
	ca := a.waitRunning(web, 30*time.Second)
	cb := b.waitRunning(web, 30*time.Second)
	if ca.Pid == cb.Pid {
		t.Fatalf("both daemons report pid %d", ca.Pid)
	}
	dirA, errA := cgroupDir(ca.Pid, "pids")
	dirB, errB := cgroupDir(cb.Pid, "pids")
	if errA != nil || errB != nil {
		// A unified (v2) host: the one hierarchy.
		dirA, errA = cgroupDir(ca.Pid, "")
		dirB, errB = cgroupDir(cb.Pid, "")
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
	}
	if dirA == dirB {
		t.Fatalf("both daemons' %s run in cgroup %s", web, dirA)
	}
	pa, pb := a.cgroupParent(), b.cgroupParent()
	if pa == "" || pa == pb || !strings.HasPrefix(pa, "/reconciled-") || !strings.Contains(dirA, pa+"/"+web) {
		t.Errorf("cgroup parents: a %q (cgroup %s), b %q", pa, dirA, pb)
	}
	if got := memoryLimit(t, ca.Pid); got != 32<<20 {
		t.Errorf("a's memory limit %d, want %d", got, 32<<20)
	}
	if got := memoryLimit(t, cb.Pid); got != 64<<20 {
		t.Errorf("b's memory limit %d, want %d", got, 64<<20)
	}

	b.deleteGone("web.yaml", web, cb.Pid)
	time.Sleep(time.Second)
	if !alive(ca.Pid) {
		t.Fatalf("removing b's %s killed a's (pid %d)", web, ca.Pid)
	}
	if c := a.statusOf(web); c.Pid != ca.Pid || c.Restarts != 0 {
		t.Errorf("a's %s after b's was removed: pid %d, %d restarts; want pid %d", web, c.Pid, c.Restarts, ca.Pid)
	}
	// The parent is kept across a restart; the container stays.
	c := a.restartDaemon(web, ca.Pid)
	if c.Pid != ca.Pid || a.cgroupParent() != pa {
		t.Errorf("after a restart: pid %d (want %d), parent %q (want %q)", c.Pid, ca.Pid, a.cgroupParent(), pa)
	}
	a.deleteGone("web.yaml", web, ca.Pid)
	for _, root := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup"} {
		if _, err := os.Stat(root + pa); err == nil {
			t.Errorf("the daemon's cgroup parent %s%s is left after its last container", root, pa)
		}
	}
}

// frozenCgroup makes the cgroup rel (e.g. "/reconciled-HASH/NAME") by hand
// in the freezer hierarchy (the unified one on a v2 host), puts a sleep
// of the test's in it and freezes it. It returns the directory and the
// sleep's PID; the test's cleanup thaws it, kills the sleep and removes
// what it made.
func frozenCgroup(t *testing.T, rel string) (string, int) {
	t.Helper()
	root, file, frozen, thawed := "/sys/fs/cgroup/freezer", "freezer.state", "FROZEN", "THAWED"
	if _, err := os.Stat(root); err != nil {
		root, file, frozen, thawed = "/sys/fs/cgroup", "cgroup.freeze", "1", "0"
	}
	dir := root + rel
	var made []string
	for d := dir; d != root; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = append([]string{d}, made...)
	}
	for _, d := range made {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sleep := exec.Command("/bin/sleep", "100000")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dir, file), []byte(thawed), 0)
		sleep.Process.Kill()
		sleep.Wait()
		for i := len(made) - 1; i >= 0; i-- {
			for try := 0; try < 100; try++ {
				if err := syscall.Rmdir(made[i]); err == nil || err == syscall.ENOENT || err == syscall.ENOTEMPTY {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(sleep.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(frozen), 0); err != nil {
		t.Fatal(err)
	}
	return dir, sleep.Process.Pid
}

// cgroupProcs lists the PIDs in the cgroup directory dir.
func cgroupProcs(t *testing.T, dir string) []int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		n, _ := strconv.Atoi(f)
		pids = append(pids, n)
	}
	return pids
}

// A frozen cgroup where a new container's would go (a container paused
// when its daemon was killed left one) does not hang the create: the
// daemon refuses it at once, saying it is unexpectedly frozen and naming
// the cgroup and its processes, and never joins it (nor thaws or kills
// what is not its own).
func TestFrozenCgroupRefused(t *testing.T) {
	e := newEnv(t)
	e.start()
	web := e.name("web")
	parent := e.cgroupParent()
	if parent == "" {
		parent = "/reconciled" // a daemon that records none (before issue 14)
	}
	dir, pid := frozenCgroup(t, parent+"/"+web)
	e.write("web.yaml", manifest(web, sleepForever, ""))
	r := e.waitFor(web+" refused", 20*time.Second, func(r *report) bool {
		c := r.Get(web)
		return c != nil && strings.Contains(c.Message, "unexpectedly frozen")
	})
	if msg := r.Get(web).Message; !strings.Contains(msg, dir) || !strings.Contains(msg, strconv.Itoa(pid)) {
		t.Errorf("the error does not name the cgroup %s and its process %d: %s", dir, pid, msg)
	}
	time.Sleep(2 * time.Second) // a retry or two
	if got := cgroupProcs(t, dir); len(got) != 1 || got[0] != pid {
		t.Errorf("cgroup %s holds %v; want only the test's %d", dir, got, pid)
	}
	if !alive(pid) {
		t.Errorf("the daemon killed the test's process %d", pid)
	}
	if c := e.statusOf(web); c.Pid != 0 && alive(c.Pid) {
		t.Errorf("a container runs (pid %d) beside the frozen cgroup", c.Pid)
	}
}

// monitors lists the processes that are container name's monitor
// (argv "reconciled-monitor NAME").
func monitors(name string) []int {
	var out []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) >= 2 && args[0] == "reconciled-monitor" && strings.TrimRight(args[1], " \x00") == name {
			out = append(out, pid)
		}
	}
	return out
}

// oneCopy checks that container name runs once: its status names a live
// pid, its cgroup holds that process alone and one monitor serves it.
func (e *env) oneCopy(name string) *container {
	e.t.Helper()
	c := e.statusOf(name)
	dir, err := cgroupDir(c.Pid, "pids")
	if err != nil {
		if dir, err = cgroupDir(c.Pid, ""); err != nil {
			e.t.Fatal(err)
		}
	}
	if got := cgroupProcs(e.t, dir); len(got) != 1 || got[0] != c.Pid {
		e.t.Errorf("cgroup %s holds %v; want %s's pid %d alone", dir, got, name, c.Pid)
	}
	if m := monitors(name); len(m) != 1 {
		e.t.Errorf("%d monitors of %s run: %v", len(m), name, m)
	}
	return c
}

// hasEventText says whether one of c's events says text.
func hasEventText(c *container, text string) bool {
	return anyEvent(c, func(r string) bool { return strings.Contains(r, text) })
}

// Bad runtime state never duplicates a container: the cgroup is the
// ground truth for what runs. A runtime state directory removed while its
// container runs, or a state.json truncated, makes the daemon stop what
// runs in the container's cgroup and create it again: one process, one
// monitor, status saying why, and no endless "unable to parse state"
// loop.
func TestBadRuntimeStateOneCopy(t *testing.T) {
	e := newEnv(t)
	e.start("--resync", "1s")
	lost, trunc := e.name("lost"), e.name("trunc")
	e.write("lost.yaml", manifest(lost, sleepForever, ""))
	e.write("trunc.yaml", manifest(trunc, sleepForever, ""))
	l0 := e.waitRunning(lost, 30*time.Second)
	t0 := e.waitRunning(trunc, 30*time.Second)
	e.oneCopy(lost)
	e.oneCopy(trunc)

	// Old enough that the daemon's cache trusts the state's timestamps
	// (its cheap check): a truncation in place must still be seen.
	time.Sleep(2 * time.Second)
	if err := os.RemoveAll(filepath.Join(e.state, "runtime", lost)); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(e.state, "runtime", trunc, "state.json"), 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*container{l0, t0} {
		e.waitFor(c.Name+" running again", 30*time.Second, func(r *report) bool {
			n := r.Get(c.Name)
			return n != nil && n.Phase == "running" && n.Pid != 0 && n.Pid != c.Pid
		})
	}
	time.Sleep(3 * time.Second) // a few resyncs
	for _, c := range []*container{l0, t0} {
		if alive(c.Pid) {
			t.Errorf("%s's first process %d still runs beside the new one", c.Name, c.Pid)
		}
		e.oneCopy(c.Name)
	}
	if c := e.statusOf(lost); !hasEventText(c, "runtime state was lost") {
		t.Errorf("status %s does not say its state was lost: %+v", lost, c.Events)
	}
	if c := e.statusOf(trunc); !hasEventText(c, "runtime state was unreadable") {
		t.Errorf("status %s does not say its state was unreadable: %+v", trunc, c.Events)
	}
	before := strings.Count(e.log(), "unable to parse state")
	time.Sleep(3 * time.Second)
	if after := strings.Count(e.log(), "unable to parse state"); after != before {
		t.Errorf("the daemon still logs \"unable to parse state\" (%d more times in 3s)", after-before)
	}

	// Lost while the daemon is down: the next daemon (which prunes what
	// it keeps of containers without runtime state) still knows the
	// cgroup's process for its own (its monitor serves that name).
	l1 := e.statusOf(lost)
	e.stop(syscall.SIGTERM)
	if err := os.RemoveAll(filepath.Join(e.state, "runtime", lost)); err != nil {
		t.Fatal(err)
	}
	e.start("--resync", "1s")
	e.waitFor(lost+" running again after the restart", 30*time.Second, func(r *report) bool {
		n := r.Get(lost)
		return n != nil && n.Phase == "running" && n.Pid != 0 && n.Pid != l1.Pid
	})
	time.Sleep(2 * time.Second)
	if alive(l1.Pid) {
		t.Errorf("%s's process %d still runs beside the new one", lost, l1.Pid)
	}
	e.oneCopy(lost)
}

// `reconciled runtime delete --force` always works: on a container whose
// state.json is truncated it kills what runs in the container's cgroup
// and removes it; on a container that does not exist it exits 0, as runc
// and crun do.
func TestRuntimeDeleteForceBrokenState(t *testing.T) {
	e := newEnv(t)
	e.start()
	web := e.name("web")
	e.write("web.yaml", manifest(web, sleepForever, ""))
	c := e.waitRunning(web, 30*time.Second)
	e.stop(syscall.SIGTERM) // the container outlives it
	root := filepath.Join(e.state, "runtime")
	if err := os.Truncate(filepath.Join(root, web, "state.json"), 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{web, e.name("nosuch")} {
		out, err := exec.Command(bin, "runtime", "--root", root, "delete", "--force", id).CombinedOutput()
		if err != nil {
			t.Errorf("runtime delete --force %s: %v\n%s", id, err, out)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(c.Pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(c.Pid) {
		t.Errorf("pid %d still runs after delete --force", c.Pid)
	}
	if m := monitors(web); len(m) != 0 {
		t.Errorf("monitors of %s left: %v", web, m)
	}
	if _, err := os.Stat(filepath.Join(root, web)); !os.IsNotExist(err) {
		t.Errorf("the state of %s is left: %v", web, err)
	}
}
