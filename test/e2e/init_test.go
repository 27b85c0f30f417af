package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/internal/testutil/registry"
)

// initManifest is a container on the host's root with init: true; its
// command runs under /bin/sh -c as PID 1's child.
func initManifest(name, command, extra string) string {
	return fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: %s
spec:
  root: {path: /, readonly: true}
  command: ["/bin/sh", "-c", %q]
  user: "65534:65534"
  init: true
%s`, name, command, extra)
}

// zombies lists the zombie children of host pid ppid.
func zombies(ppid int) []int {
	var out []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + p.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state ppid ...
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	return out
}

// With init: true the container's PID 1 is reconciled's init: the command
// (a shell that execs sleep, which as PID 1 would ignore SIGTERM and never
// reap) gets the stop signal and the container stops at once instead of
// after the stop timeout; orphans, also those of `reconciled exec`, are
// reaped; the exit code, or 128+N for a signal, is the container's; and
// the init is no file of the container's, only a sealed memfd.
func TestInit(t *testing.T) {
	e := newEnv(t)
	e.start()
	web, seven, usr1 := e.name("web"), e.name("seven"), e.name("usr1")
	// Three orphans that end at once, then the shell execs sleep.
	e.write("web.yaml", initManifest(web, "(sleep 0.1 &); (sleep 0.1 &); (sleep 0.1 &); echo ready; exec sleep 100000",
		"  stop: {signal: SIGTERM, timeout: 30s}\n"))
	e.write("seven.yaml", initManifest(seven, "sleep 0.5; exit 7", "  restart: never\n"))
	e.write("usr1.yaml", initManifest(usr1, "sleep 0.5; kill -USR1 $$; sleep 100", "  restart: never\n"))

	c := e.waitRunning(web, 30*time.Second)
	e.waitLogs(web, "ready")
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", c.Pid)); err != nil || !strings.Contains(exe, "memfd:reconciled-init") {
		t.Errorf("PID 1 of %s runs %q (%v), want the init's memfd", web, exe, err)
	}
	// An exec'd command whose child outlives it: the orphan is reparented
	// to the init, which reaps it.
	out, err := exec.Command(bin, "exec", "--state", e.state, web, "--", "/bin/sh", "-c", "(sleep 0.1 &); echo done").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "done") {
		t.Fatalf("exec: %v: %s", err, out)
	}
	time.Sleep(1500 * time.Millisecond)
	if z := zombies(c.Pid); len(z) > 0 {
		t.Errorf("zombies under %s's PID 1 (%d): %v", web, c.Pid, z)
	}
	// The shell's sleep is not PID 1: the init forwards SIGTERM to it.
	// Every PID of the container is the init's child or gone.
	if cur := e.statusOf(web); cur.Pid != c.Pid {
		t.Fatalf("%s restarted: pid %d, was %d", web, cur.Pid, c.Pid)
	}

	for _, want := range []struct {
		name string
		code int
	}{{seven, 7}, {usr1, 128 + 10}} {
		r := e.waitFor(want.name+" exited", 30*time.Second, func(r *report) bool {
			c := r.Get(want.name)
			return c != nil && c.Phase == "exited" && c.ExitCode != nil
		})
		if got := *r.Get(want.name).ExitCode; got != want.code {
			t.Errorf("%s exit code %d, want %d", want.name, got, want.code)
		}
	}

	start := time.Now()
	if err := os.Remove(filepath.Join(e.manifests, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	e.waitFor(web+" gone", 45*time.Second, func(r *report) bool { return r.Get(web) == nil })
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("%s took %s to stop (stop timeout 30s): SIGTERM did not reach the command", web, d.Round(time.Millisecond))
	}
	if alive(c.Pid) {
		t.Errorf("pid %d still runs", c.Pid)
	}
	if log, _ := os.ReadFile(e.stderr); strings.Contains(string(log), "stop timed out") {
		t.Errorf("the stop timed out:\n%s", log)
	}
}

// The init runs whatever the root: the host's (read-only), an image's
// overlay, and a plain directory; each command is a shell that execs
// sleep (SIGTERM as PID 1 would do nothing) and each stops at once.
func TestInitEveryRoot(t *testing.T) {
	e := newEnv(t)
	reg := registry.Start(t)
	registry.Push(t, reg, "e2e/init:1", registry.BusyboxImage(t))
	dir := filepath.Join(e.dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"sh", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", l)); err != nil {
			t.Fatal(err)
		}
	}
	const cmd = "echo ready; exec sleep 100000"
	host, img, plain, hooked := e.name("host"), e.name("image"), e.name("dir"), e.name("hooked")
	stop := "  stop: {signal: SIGTERM, timeout: 30s}\n"
	e.write("host.yaml", initManifest(host, cmd, stop))
	// A startContainer hook makes the Go init wait and exec the init itself
	// (no waiter).
	e.write("hooked.yaml", initManifest(hooked, cmd, stop+"  oci: {hooks: {startContainer: [{path: /bin/true}]}}\n"))
	e.write("image.yaml", fmt.Sprintf("apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: %s}\nspec:\n  image: %s\n  command: [/bin/sh, -c, %q]\n  init: true\n%s",
		img, reg.Ref("e2e/init:1"), cmd, stop))
	e.write("dir.yaml", strings.Replace(initManifest(plain, cmd, stop), "root: {path: /, readonly: true}", "root: {path: "+dir+", readonly: true}", 1))
	e.start()
	names := []string{host, img, plain, hooked}
	r := e.client().WaitRunning(t, 60*time.Second, names...)
	for _, n := range names {
		e.waitLogs(n, "ready")
		pid := r.Get(n).Pid
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || !strings.Contains(exe, "memfd:reconciled-init") {
			t.Errorf("PID 1 of %s runs %q (%v), want the init's memfd", n, exe, err)
		}
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				t.Logf("%s: the init's %s", n, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	start := time.Now()
	for _, f := range []string{"host.yaml", "image.yaml", "dir.yaml", "hooked.yaml"} {
		if err := os.Remove(filepath.Join(e.manifests, f)); err != nil {
			t.Fatal(err)
		}
	}
	e.waitFor("all gone", 45*time.Second, func(r *report) bool {
		return r.Get(host) == nil && r.Get(img) == nil && r.Get(plain) == nil && r.Get(hooked) == nil
	})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the stops took %s (timeout 30s): SIGTERM did not reach the commands", d.Round(time.Millisecond))
	}
	if log, _ := os.ReadFile(e.stderr); strings.Contains(string(log), "stop timed out") {
		t.Errorf("a stop timed out:\n%s", log)
	}
}

// A stop that times out and ends in SIGKILL is an event of the container
// that says so and names the fix, init: true.
func TestStopTimeoutEventSuggestsInit(t *testing.T) {
	e := newEnv(t)
	e.start()
	name := e.name("deaf")
	stop := "  stop: {signal: SIGTERM, timeout: 1s}\n"
	// sleep as PID 1 has no handler for SIGTERM: the kernel drops it.
	e.write("deaf.yaml", strings.Replace(initManifest(name, "echo one; exec sleep 100000", stop), "  init: true\n", "", 1))
	old := e.waitRunning(name, 30*time.Second)
	e.waitLogs(name, "one")
	e.write("deaf.yaml", strings.Replace(initManifest(name, "echo two; exec sleep 100000", stop), "  init: true\n", "", 1))
	e.waitFor(name+" recreated", 30*time.Second, func(r *report) bool {
		c := r.Get(name)
		return c != nil && c.Phase == "running" && c.Pid != old.Pid
	})
	var found bool
	for _, ev := range e.statusOf(name).Events {
		if ev.Action == "stop" && strings.Contains(ev.Reason, "stop timed out") && strings.Contains(ev.Reason, "SIGKILL") && strings.Contains(ev.Reason, "init: true") {
			found = true
		}
	}
	if !found {
		t.Errorf("no event says the stop timed out and suggests init: true: %+v", e.statusOf(name).Events)
	}
	out, err := exec.Command(bin, "status", "--state", e.state, name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "init: true") {
		t.Errorf("status %s: %v\n%s", name, err, out)
	}
}
