package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"reconciled.dev/reconciled/executor"
)

const sleepForever = "echo hello from $HOSTNAME; exec sleep 100000"

// A manifest dropped into the directory runs; its output reaches its log
// file; removing the manifest stops and deletes it, leaving no process,
// cgroup or state.
func TestDropRunsDeleteRemoves(t *testing.T) {
	e := newEnv(t)
	e.start()
	web := e.name("web")
	e.write("web.yaml", manifest(web, sleepForever, ""))
	c := e.waitRunning(web, 30*time.Second)
	if !alive(c.Pid) {
		t.Fatalf("status says pid %d, which does not run", c.Pid)
	}
	if c.Restarts != 0 || c.SpecHash == "" || c.Source != filepath.Join(e.manifests, "web.yaml") {
		t.Errorf("status: %+v", c)
	}
	// Its stdout went to LOGDIR/NAME.log, which `reconciled logs` prints.
	e.waitLogs(web, "hello from")
	// The status file says the same as the socket, within moments.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var file container
		data, err := os.ReadFile(filepath.Join(e.state, "status", web+".json"))
		if err == nil {
			err = json.Unmarshal(data, &file)
		}
		if err == nil && file.Pid == c.Pid && file.Phase == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("status file %s: %v %s", web, err, data)
			break
		}
	}
	e.deleteGone("web.yaml", web, c.Pid)
	// The status files follow the daemon's view within moments.
	statusFile := filepath.Join(e.state, "status", web+".json")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(statusFile); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s still there", statusFile)
			break
		}
	}
	for _, p := range []string{"runtime", "bundles", "containers", "status"} {
		if _, err := os.Stat(filepath.Join(e.state, p, web)); !os.IsNotExist(err) {
			t.Errorf("%s/%s left: %v", p, web, err)
		}
		if _, err := os.Stat(filepath.Join(e.state, p, web+".json")); !os.IsNotExist(err) {
			t.Errorf("%s/%s.json left: %v", p, web, err)
		}
	}
	if left := e.leftoversBesideSpares(); len(left) > 0 {
		t.Errorf("left behind after delete: %v", left)
	}
}

// Editing the command recreates the container (new PID), saying why;
// reformatting the file (comments, key order, flow style) changes nothing.
func TestEditRecreatesReformatKeeps(t *testing.T) {
	e := newEnv(t)
	e.start()
	web := e.name("web")
	e.write("web.yaml", manifest(web, sleepForever, ""))
	first := e.waitRunning(web, 30*time.Second)

	// The same manifest, written differently.
	reformatted := fmt.Sprintf(`# reformatted: comments, key order and flow style differ
kind: Container
apiVersion: reconciled.dev/v1
spec:
  stop:
    timeout: 1s
    signal: KILL       # the same signal, spelled differently
  user: "65534:65534"
  command:
    - /bin/sh
    - -c
    - %q
  root:
    readonly: true
    path: /
metadata: {name: %s}
`, sleepForever, web)
	e.waitSeen("web.yaml", e.write("web.yaml", reformatted))
	// Give the loop a moment to act on it, had it anything to do.
	time.Sleep(time.Second)
	c := e.statusOf(web)
	if c.Pid != first.Pid || c.Phase != "running" || !alive(first.Pid) {
		t.Fatalf("reformatting changed the container: pid %d -> %d, phase %s", first.Pid, c.Pid, c.Phase)
	}
	if c.SpecHash != first.SpecHash {
		t.Errorf("spec hash %s -> %s", first.SpecHash, c.SpecHash)
	}

	e.write("web.yaml", manifest(web, "echo edited; exec sleep 100001", ""))
	r := e.waitFor(web+" recreated", 30*time.Second, func(r *report) bool {
		c := r.Get(web)
		return c != nil && c.Phase == "running" && c.Pid != first.Pid && c.Pid > 0
	})
	c = r.Get(web)
	if alive(first.Pid) {
		t.Errorf("old pid %d still runs", first.Pid)
	}
	if c.SpecHash == first.SpecHash {
		t.Errorf("spec hash did not change")
	}
	if !hasEvent(e.statusOf(web), "recreated: spec.command changed") {
		t.Errorf("no event says why: %+v", e.statusOf(web).Events)
	}
}

// Changing only the memory limit updates the cgroup in place: same PID,
// new limit.
func TestMemoryChangeInPlace(t *testing.T) {
	e := newEnv(t)
	e.start()
	web := e.name("web")
	e.write("web.yaml", manifest(web, sleepForever, "  resources: {memory: 32Mi}\n"))
	first := e.waitRunning(web, 30*time.Second)
	if got := memoryLimit(t, first.Pid); got != 32<<20 {
		t.Fatalf("memory limit %d, want %d", got, 32<<20)
	}
	e.write("web.yaml", manifest(web, sleepForever, "  resources: {memory: 64Mi}\n"))
	deadline := time.Now().Add(30 * time.Second)
	for memoryLimit(t, first.Pid) != 64<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("memory limit still %d", memoryLimit(t, first.Pid))
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := e.waitRunning(web, 10*time.Second)
	if c.Pid != first.Pid {
		t.Errorf("pid %d -> %d: a memory change restarted the container", first.Pid, c.Pid)
	}
	if !hasEvent(e.statusOf(web), "updated in place: spec.resources.memory changed") {
		t.Errorf("no event says why: %+v", e.statusOf(web).Events)
	}
}

// memoryLimit reads the memory limit of pid's cgroup (v1
// memory.limit_in_bytes, or memory.max in a unified hierarchy).
func memoryLimit(t *testing.T, pid int) int64 {
	t.Helper()
	file := "memory.limit_in_bytes"
	dir, err := cgroupDir(pid, "memory")
	if err != nil {
		if dir, err = cgroupDir(pid, ""); err != nil {
			t.Fatal(err)
		}
		file = "memory.max"
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %q", file, data)
	}
	return n
}

// kill -9 of a container's process: restart: always brings it back with a
// new PID; restart: never leaves it exited with 137.
func TestKilledRestartedPerPolicy(t *testing.T) {
	e := newEnv(t)
	e.start()
	always, never := e.name("always"), e.name("never")
	e.write("always.yaml", manifest(always, sleepForever, "  restart: always\n"))
	e.write("never.yaml", manifest(never, sleepForever, "  restart: never\n"))
	a := e.waitRunning(always, 30*time.Second)
	n := e.waitRunning(never, 30*time.Second)
	for _, pid := range []int{a.Pid, n.Pid} {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	r := e.waitFor("restart of "+always+", exit of "+never, 30*time.Second, func(r *report) bool {
		ca, cn := r.Get(always), r.Get(never)
		return ca != nil && ca.Phase == "running" && ca.Pid > 0 && ca.Pid != a.Pid &&
			cn != nil && cn.Phase == "exited"
	})
	ca, cn := r.Get(always), r.Get(never)
	if ca.Restarts != 1 || ca.ExitCode == nil || *ca.ExitCode != 137 {
		t.Errorf("%s: restarts %d, last exit %v; want 1 and 137", always, ca.Restarts, ca.ExitCode)
	}
	if cn.Pid != 0 || alive(n.Pid) || cn.ExitCode == nil || *cn.ExitCode != 137 || cn.Restarts != 0 {
		t.Errorf("%s: %+v", never, cn)
	}
	if !hasEvent(e.statusOf(always), "restarted: exited with 137 (SIGKILL), policy always") {
		t.Errorf("no event says why: %+v", e.statusOf(always).Events)
	}
	// It stays exited.
	time.Sleep(2 * time.Second)
	if c := e.statusOf(never); c.Phase != "exited" || c.Restarts != 0 {
		t.Errorf("%s after 2s: %+v", never, c)
	}
}

// A container that keeps failing is restarted after growing delays (1s,
// 2s, 4s...): the gaps between its starts grow.
func TestCrashLoopBacksOff(t *testing.T) {
	e := newEnv(t)
	e.start()
	crash := e.name("crash")
	e.write("crash.yaml", manifest(crash, "echo failing; exit 3", "  restart: always\n"))
	var starts []time.Time
	e.waitFor("four starts of "+crash, 60*time.Second, func(r *report) bool {
		c := e.statusOf(crash)
		starts = starts[:0]
		for _, ev := range c.Events {
			if ev.Action == "start" {
				starts = append(starts, ev.Time)
			}
		}
		return len(starts) >= 4
	})
	var gaps []time.Duration
	for i := 1; i < len(starts); i++ {
		gaps = append(gaps, starts[i].Sub(starts[i-1]))
	}
	for i := 1; i < len(gaps); i++ {
		if gaps[i] <= gaps[i-1] {
			t.Errorf("restart delays do not grow: %v", gaps)
			break
		}
	}
	// The counts follow the events within a plan of the loop.
	var c *container
	e.waitFor("status of "+crash+" to count 3 restarts after exits with 3", 10*time.Second, func(r *report) bool {
		c = e.statusOf(crash)
		return c.ExitCode != nil && *c.ExitCode == 3 && c.Restarts >= 3
	})
	if !hasEventPrefix(c, "backoff: next try in ") {
		t.Errorf("no backoff event: %+v", c.Events)
	}
}

// A good manifest replaced by broken YAML keeps its container as it is;
// status shows the error.
func TestBrokenManifestKeepsContainer(t *testing.T) {
	e := newEnv(t)
	e.start()
	web := e.name("web")
	e.write("web.yaml", manifest(web, sleepForever, ""))
	first := e.waitRunning(web, 30*time.Second)
	broken := "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: " + web + "\nspec: [oops\n"
	r := e.waitSeen("web.yaml", e.write("web.yaml", broken))
	var f *file
	for i := range r.Files {
		if r.Files[i].Path == filepath.Join(e.manifests, "web.yaml") {
			f = &r.Files[i]
		}
	}
	if f == nil || f.Valid || len(f.Errors) == 0 {
		t.Fatalf("status does not show web.yaml as invalid: %+v", r.Files)
	}
	r = e.waitFor(web+" kept", 10*time.Second, func(r *report) bool {
		c := r.Get(web)
		return c != nil && strings.Contains(c.Message, "kept: web.yaml is invalid")
	})
	c := r.Get(web)
	if c.Pid != first.Pid || c.Phase != "running" || !alive(first.Pid) {
		t.Errorf("broken manifest changed the container: %+v (was pid %d)", c, first.Pid)
	}
	// The text output names the file and its error.
	out, err := exec.Command(bin, "status", "--state", e.state).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "web.yaml is invalid") {
		t.Errorf("status: %v\n%s", err, out)
	}
}

// SIGTERM stops the daemon and leaves the containers running; a new daemon
// adopts them without restarting any.
func TestDaemonStopKeepsContainers(t *testing.T) {
	e := newEnv(t)
	e.start()
	web := e.name("web")
	e.write("web.yaml", manifest(web, sleepForever, ""))
	first := e.waitRunning(web, 30*time.Second)
	c := e.restartDaemon(web, first.Pid)
	if c.Pid != first.Pid || c.Restarts != 0 {
		t.Errorf("after a daemon restart: pid %d -> %d, restarts %d", first.Pid, c.Pid, c.Restarts)
	}
	if !hasEventPrefix(e.statusOf(web), "adopted: running since") {
		t.Errorf("no adoption event: %+v", e.statusOf(web).Events)
	}
}

// A daemon stopped with SIGTERM right after it started a container leaves
// that container in cgroups of its own: on a hybrid host one made from a
// spare first runs in the spare's cgroup2 directory, and its move from
// there, left for a quiet moment, is done before the daemon exits. A
// `reconciled runtime delete` after the daemon then leaves nothing behind
// (the harness's cleanup checks that).
func TestDaemonStopRightAfterStart(t *testing.T) {
	e := newEnv(t)
	e.start()
	var last string
	for i := range 3 { // the first may be made without a spare
		last = e.name(fmt.Sprintf("web%d", i))
		e.write(last+".yaml", manifest(last, "echo up; exec sleep 100000", ""))
		log := filepath.Join(e.logDir, last+".log")
		deadline := time.Now().Add(30 * time.Second)
		for {
			if data, _ := os.ReadFile(log); strings.Contains(string(data), "up") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not write to %s in 30 s", last, log)
			}
			time.Sleep(time.Millisecond)
		}
	}
	e.stop(syscall.SIGTERM)
	st, err := executor.ReadState(filepath.Join(e.state, "runtime"), last)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && path.Base(f[2]) != last {
			t.Errorf("after the daemon stopped, %s's process %d is in cgroup %s in hierarchy %q, not its own", last, st.Pid, f[2], f[1])
		}
	}
}

// SIGKILL of the daemon while it converges 50 containers, then a new
// daemon: every container runs exactly once, and none that was running is
// restarted.
func TestDaemonKilledMidConverge(t *testing.T) {
	e := newEnv(t)
	const n = 50
	names := make([]string, n)
	for i := range names {
		names[i] = e.name(fmt.Sprintf("c%02d", i))
		e.write(names[i]+".yaml", manifest(names[i], "exec sleep 100000", ""))
	}
	e.start()
	// Wait until some, not all, run.
	root := filepath.Join(e.state, "runtime")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if running(t, root) >= n/4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d containers run after 60s", running(t, root))
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.stop(syscall.SIGKILL)
	before := states(t, root)
	wasRunning := 0
	for _, st := range before {
		if st.Status == "running" {
			wasRunning++
		}
	}
	t.Logf("killed the daemon with %d of %d containers running, %d present", wasRunning, n, len(before))

	e.start()
	r := e.waitFor("all running", 120*time.Second, func(r *report) bool {
		k := 0
		for _, nm := range names {
			if c := r.Get(nm); c != nil && c.Phase == "running" && c.Pid > 0 {
				k++
			}
		}
		return k == n
	})
	for _, nm := range names {
		c := r.Get(nm)
		if st, ok := before[nm]; ok && st.Status == "running" {
			if c.Pid != st.Pid {
				t.Errorf("%s was running as pid %d, now %d: restarted", nm, st.Pid, c.Pid)
			}
		}
		if c.Restarts != 0 {
			t.Errorf("%s: %d restarts", nm, c.Restarts)
		}
		if !alive(c.Pid) {
			t.Errorf("%s: pid %d does not run", nm, c.Pid)
		}
	}
	// Exactly once: one monitor per container, and nothing else under the
	// runtime root.
	monitors := map[string]int{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmdline, _ := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		args := strings.Split(string(cmdline), "\x00")
		if len(args) >= 2 && args[0] == "reconciled-monitor" && strings.HasPrefix(args[1], e.prefix) {
			monitors[args[1]]++
		}
	}
	for _, nm := range names {
		if monitors[nm] != 1 {
			t.Errorf("%s: %d monitors", nm, monitors[nm])
		}
	}
	if got := states(t, root); len(got) != n {
		t.Errorf("%d containers under the runtime root, want %d", len(got), n)
	}
}

type runtimeState struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

// states lists the containers under the runtime root with the binary.
func states(t *testing.T, root string) map[string]runtimeState {
	t.Helper()
	out, err := exec.Command(bin, "runtime", "--root", root, "list", "-o", "json").Output()
	if err != nil {
		t.Fatalf("runtime list: %v", err)
	}
	var list []runtimeState
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("runtime list: %v\n%s", err, out)
	}
	m := map[string]runtimeState{}
	for _, s := range list {
		m[s.ID] = s
	}
	return m
}

func running(t *testing.T, root string) int {
	k := 0
	for _, s := range states(t, root) {
		if s.Status == "running" {
			k++
		}
	}
	return k
}

// anyEvent says whether the reason of one of c's events satisfies match.
func anyEvent(c *container, match func(reason string) bool) bool {
	for _, ev := range c.Events {
		if match(ev.Reason) {
			return true
		}
	}
	return false
}

func hasEvent(c *container, reason string) bool {
	return anyEvent(c, func(r string) bool { return r == reason })
}

func hasEventPrefix(c *container, prefix string) bool {
	return anyEvent(c, func(r string) bool { return strings.HasPrefix(r, prefix) })
}
