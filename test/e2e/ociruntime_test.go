package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/testutil"
)

// runc runs a container through its whole life as the native executor
// would: drop → running (output in its log), kill -9 → restarted with 137
// recorded, edit → recreated, daemon restart → adopted (and its exit
// still seen), delete → gone with no process, cgroup or runc state left.
func TestRuncLifecycle(t *testing.T) {
	testutil.RequireBinary(t, "runc")
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	e.start()
	web := e.name("web")
	runcState := func() string {
		out, _ := exec.Command("runc", "--root", filepath.Join(e.state, "oci", "runc"), "state", web).CombinedOutput()
		return string(out)
	}
	native := e.name("native")
	e.write("web.yaml", ociManifest(web, "runc", rootfs, sleepForever))
	e.write("native.yaml", manifest(native, sleepForever, ""))
	first := e.waitRunning(web, 30*time.Second)
	if !alive(first.Pid) {
		t.Fatalf("status says pid %d, which does not run", first.Pid)
	}
	// status names the runtime of each container, in JSON and as text.
	if nat := e.waitRunning(native, 30*time.Second); first.Runtime != "runc" || nat.Runtime != "native" {
		t.Errorf("status -o json: runtime %q for %s, %q for %s; want runc and native", first.Runtime, web, nat.Runtime, native)
	}
	text, err := exec.Command(bin, "status", "--state", e.state).CombinedOutput()
	if err != nil {
		t.Fatalf("reconciled status: %v\n%s", err, text)
	}
	if !hasRow(string(text), web, "runc") || !hasRow(string(text), native, "native") || !strings.Contains(string(text), "RUNTIME") {
		t.Errorf("reconciled status does not show the runtimes:\n%s", text)
	}
	if err := os.Remove(filepath.Join(e.manifests, "native.yaml")); err != nil {
		t.Fatal(err)
	}
	e.waitFor(native+" gone", 30*time.Second, func(r *report) bool { return r.Get(native) == nil })
	st, err := executor.ReadState(filepath.Join(e.state, "runtime"), web)
	if err != nil || st.Annotations["dev.reconciled.runtime"] != "runc" || st.Pid != first.Pid {
		t.Fatalf("state: %+v, %v", st, err)
	}
	if s := runcState(); !strings.Contains(s, `"running"`) || !strings.Contains(s, `"pid": `+strconv.Itoa(first.Pid)) {
		t.Fatalf("runc state: %s", s)
	}
	e.waitLogs(web, "hello from")

	// kill -9: restarted (policy always), the exit recorded.
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := e.waitFor(web+" restarted", 30*time.Second, func(r *report) bool {
		c := r.Get(web)
		return c != nil && c.Phase == "running" && c.Pid > 0 && c.Pid != first.Pid
	})
	c := r.Get(web)
	if c.Restarts != 1 || c.ExitCode == nil || *c.ExitCode != 137 {
		t.Errorf("after kill -9: restarts %d, last exit %v; want 1 and 137", c.Restarts, c.ExitCode)
	}
	if !hasEvent(e.statusOf(web), "restarted: exited with 137 (SIGKILL), policy always") {
		t.Errorf("no event says why: %+v", e.statusOf(web).Events)
	}

	// Edit: recreated.
	e.write("web.yaml", ociManifest(web, "runc", rootfs, "echo edited; exec sleep 100001"))
	r = e.waitFor(web+" recreated", 30*time.Second, func(r *report) bool {
		x := r.Get(web)
		return x != nil && x.Phase == "running" && x.Pid > 0 && x.Pid != c.Pid
	})
	edited := r.Get(web)
	if alive(c.Pid) {
		t.Errorf("old pid %d still runs", c.Pid)
	}
	if !hasEvent(e.statusOf(web), "recreated: spec.command changed") {
		t.Errorf("no event says why: %+v", e.statusOf(web).Events)
	}

	// Daemon restart: adopted, not restarted.
	adopted := e.restartDaemon(web, edited.Pid)
	if adopted.Pid != edited.Pid {
		t.Errorf("after a daemon restart: pid %d -> %d", edited.Pid, adopted.Pid)
	}
	if !hasEventPrefix(e.statusOf(web), "adopted: running since") {
		t.Errorf("no adoption event: %+v", e.statusOf(web).Events)
	}
	// Its exit is still seen, and recorded, after the restart.
	if err := syscall.Kill(adopted.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r = e.waitFor(web+" restarted after adoption", 30*time.Second, func(r *report) bool {
		x := r.Get(web)
		return x != nil && x.Phase == "running" && x.Pid > 0 && x.Pid != adopted.Pid
	})
	last := r.Get(web)
	if last.ExitCode == nil || *last.ExitCode != 137 {
		t.Errorf("after kill -9 of the adopted container: last exit %v, want 137", last.ExitCode)
	}

	// Delete: nothing left.
	e.deleteGone("web.yaml", web, last.Pid)
	if s := runcState(); !strings.Contains(s, "not exist") {
		t.Errorf("runc still knows %s: %s", web, s)
	}
	for _, p := range []string{"runtime", "bundles", filepath.Join("oci", "runc")} {
		if _, err := os.Stat(filepath.Join(e.state, p, web)); !os.IsNotExist(err) {
			t.Errorf("%s/%s left: %v", p, web, err)
		}
	}
	if left := e.leftoversBesideSpares(); len(left) > 0 {
		t.Errorf("left behind after delete: %v", left)
	}
}

// A runtime whose binary is missing, or a runtime the daemon does not
// know, is an error in that container's status; the daemon keeps running
// the others.
func TestRuntimeMissingBinary(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	e.start("--runtime", "broken=/nonexistent/runc")
	ok, broken, unknown := e.name("ok"), e.name("broken"), e.name("unknown")
	e.write("ok.yaml", manifest(ok, sleepForever, ""))
	e.write("broken.yaml", ociManifest(broken, "broken", rootfs, sleepForever))
	e.write("unknown.yaml", ociManifest(unknown, "nosuch", rootfs, sleepForever))
	e.waitRunning(ok, 30*time.Second)
	r := e.waitFor("errors of "+broken+" and "+unknown, 30*time.Second, func(r *report) bool {
		b, u := r.Get(broken), r.Get(unknown)
		return b != nil && strings.Contains(b.Message, "/nonexistent/runc") &&
			u != nil && strings.Contains(u.Message, `runtime "nosuch" is not configured`)
	})
	if b := r.Get(broken); b.Phase == "running" || b.Pid != 0 {
		t.Errorf("%s: %+v", broken, b)
	}
	select {
	case <-e.exited:
		t.Fatal("the daemon exited")
	default:
	}
	if c := e.statusOf(ok); c.Phase != "running" || !alive(c.Pid) {
		t.Errorf("%s: %+v", ok, c)
	}
}

// ociManifest is a container run by runtime on rootfs (runc cannot use the
// host's / as a root), read-only, as nobody.
func ociManifest(name, runtime, rootfs, command string) string {
	return strings.Replace(manifest(name, command, "  runtime: "+runtime+"\n"), "root: {path: /,", "root: {path: "+rootfs+",", 1)
}

// Changing spec.runtime recreates the container with the new runtime; the
// old one is removed by the runtime that made it.
func TestRuntimeSwitch(t *testing.T) {
	testutil.RequireBinary(t, "runc")
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	e.start()
	web := e.name("web")
	runtimeOf := func() string {
		st, err := executor.ReadState(filepath.Join(e.state, "runtime"), web)
		if err != nil {
			t.Fatalf("state of %s: %v", web, err)
		}
		return st.Annotations["dev.reconciled.runtime"]
	}
	e.write("web.yaml", ociManifest(web, "native", rootfs, sleepForever))
	prev := e.waitRunning(web, 30*time.Second)
	if rt := runtimeOf(); rt != "" {
		t.Fatalf("native container's state names runtime %q", rt)
	}
	for _, want := range []string{"runc", "native"} {
		e.write("web.yaml", ociManifest(web, want, rootfs, sleepForever))
		r := e.waitFor(web+" recreated with "+want, 30*time.Second, func(r *report) bool {
			x := r.Get(web)
			return x != nil && x.Phase == "running" && x.Pid > 0 && x.Pid != prev.Pid
		})
		if alive(prev.Pid) {
			t.Errorf("old pid %d still runs", prev.Pid)
		}
		if !hasEvent(e.statusOf(web), "recreated: spec.runtime changed") {
			t.Errorf("no event says why: %+v", e.statusOf(web).Events)
		}
		got := runtimeOf()
		if got == "" {
			got = "native"
		}
		if got != want || r.Get(web).Runtime != want {
			t.Errorf("runtime %q in the state, %q in status; want %q", got, r.Get(web).Runtime, want)
		}
		prev = r.Get(web)
	}
	if err := os.Remove(filepath.Join(e.manifests, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	e.waitFor(web+" gone", 30*time.Second, func(r *report) bool { return r.Get(web) == nil })
	if left := e.leftoversBesideSpares(); len(left) > 0 {
		t.Errorf("left behind after delete: %v", left)
	}
}

// hasRow says whether a line of status's table starts with name and has
// the field value.
func hasRow(table, name, value string) bool {
	for _, l := range strings.Split(table, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == name && slices.Contains(f[1:], value) {
			return true
		}
	}
	return false
}
