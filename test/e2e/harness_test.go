package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/daemon"
	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/internal/testutil/daemontest"
)

// bin is the reconciled binary, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	executor.MaybeRunStage()
	dir, err := os.MkdirTemp("", "reconciled-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// RECONCILED_BIN names a prebuilt binary (a host without Go, such as
	// the cgroup v2 test machine, runs a `go test -c` build of this
	// package with it).
	if prebuilt := os.Getenv("RECONCILED_BIN"); prebuilt != "" {
		if bin, err = filepath.Abs(prebuilt); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	bin = filepath.Join(dir, "reconciled")
	if err := testutil.BuildShipped(context.Background(), bin, ""); err != nil { // as shipped
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The daemon's own status types, as `reconciled status -o json` prints
// them (their JSON keys are pinned in daemontest).
type (
	report    = daemontest.Report
	container = daemon.ContainerStatus
	file      = daemon.FileReport
)

// env is one daemon with its directories.
type env struct {
	t         *testing.T
	prefix    string // every container name starts with it
	dir       string
	manifests string
	state     string
	logDir    string
	images    string // the image store (--image-root)
	daemon    *exec.Cmd
	exited    chan struct{}
	stderr    string
	// wrap, when set, is a command that execs the daemon (nice -n 4):
	// start runs wrap... reconciled run ...
	wrap []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	e := &env{
		t:         t,
		prefix:    testutil.Name(t, 30),
		dir:       dir,
		manifests: filepath.Join(dir, "manifests"),
		state:     filepath.Join(dir, "state"),
		logDir:    filepath.Join(dir, "logs"),
		images:    filepath.Join(dir, "images"),
	}
	if err := os.Mkdir(e.manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cleanup)
	return e
}

// name is a container name for this test.
func (e *env) name(s string) string { return e.prefix + "-" + s }

// start starts `reconciled run`.
func (e *env) start(extra ...string) {
	e.t.Helper()
	if e.daemon != nil {
		e.t.Fatal("daemon already started")
	}
	e.stderr = filepath.Join(e.dir, fmt.Sprintf("daemon-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(e.stderr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"run", "--manifests", e.manifests, "--state", e.state, "--log-dir", e.logDir, "--image-root", e.images,
		"--image-import-dir", filepath.Join(e.dir, "import")}, extra...)
	args = append([]string{bin}, args...)
	if len(e.wrap) > 0 {
		args = append(append([]string{}, e.wrap...), args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.daemon = cmd
	e.exited = make(chan struct{})
	go func() { cmd.Wait(); close(e.exited) }()
	// Wait for the status socket.
	e.waitFor("the daemon answers", 20*time.Second, func(r *report) bool { return true })
}

// stop sends sig to the daemon and waits for it to exit (SIGKILL after 10s).
func (e *env) stop(sig syscall.Signal) {
	e.t.Helper()
	if e.daemon == nil {
		return
	}
	e.daemon.Process.Signal(sig)
	select {
	case <-e.exited:
	case <-time.After(10 * time.Second):
		e.t.Errorf("daemon did not exit on %v; killing it", sig)
		e.daemon.Process.Kill()
		<-e.exited
	}
	e.daemon = nil
}

// restartDaemon stops the daemon with SIGTERM, checks that pid, container
// name's process, outlives it, starts a new daemon and waits until name
// runs again.
func (e *env) restartDaemon(name string, pid int) *container {
	e.t.Helper()
	e.stop(syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	if !alive(pid) {
		e.t.Fatalf("pid %d died with the daemon", pid)
	}
	e.start()
	return e.waitRunning(name, 30*time.Second)
}

// cleanup stops the daemon, deletes every container it left with the
// binary, and checks that no process, mount or cgroup of the test is left.
func (e *env) cleanup() {
	t := e.t
	e.stop(syscall.SIGTERM)
	// Last, so that it follows a leftover found below too.
	defer func() {
		if t.Failed() {
			if data, err := os.ReadFile(e.stderr); err == nil {
				t.Logf("daemon log:\n%s", testutil.Tail(string(data), 60))
			}
		}
	}()
	root := filepath.Join(e.state, "runtime")
	entries, _ := os.ReadDir(root)
	for _, ent := range entries {
		out, err := exec.Command(bin, "runtime", "--root", root, "delete", "--force", ent.Name()).CombinedOutput()
		if err != nil {
			t.Errorf("delete --force %s: %v\n%s", ent.Name(), err, out)
		}
	}
	// Image containers' root filesystems: the daemon unmounts them when
	// it deletes a container (tests check that), the runtime alone does
	// not, and a test's containers outlive its daemon.
	mnts, _ := filepath.Glob(filepath.Join(e.state, "rootfs", "*"))
	for _, m := range mnts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	// The daemon's shared bind of STATE/rootfs stays, as it would on a
	// host, until the test removes it.
	for syscall.Unmount(filepath.Join(e.state, "rootfs"), syscall.MNT_DETACH) == nil {
	}
	for _, left := range e.leftovers() {
		t.Errorf("left behind: %s", left)
	}
}

// leftoversBesideSpares is leftovers while the daemon runs: its own cgroup
// parent may stay for the spare container inits it keeps there (their
// cgroups, cgroups.SparePrefix), and only for them; after the daemon
// stops (cleanup) nothing may be left.
func (e *env) leftoversBesideSpares() []string {
	var out []string
	for _, left := range e.leftovers() {
		dir, ok := strings.CutPrefix(left, "cgroup ")
		if ok && dir != "" && onlySpares(dir) {
			continue
		}
		out = append(out, left)
	}
	return out
}

// onlySpares says whether the cgroup dir holds spare cgroups and no other.
func onlySpares(dir string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	spares := 0
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		if !strings.HasPrefix(ent.Name(), cgroups.SparePrefix) {
			return false
		}
		spares++
	}
	return spares > 0
}

// leftovers lists processes, cgroups and mounts named after the test.
func (e *env) leftovers() []string {
	var out []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		cg, _ := os.ReadFile("/proc/" + p.Name() + "/cgroup")
		if bytes.Contains(cmdline, []byte(e.prefix)) || bytes.Contains(cg, []byte("/"+e.prefix)) {
			out = append(out, fmt.Sprintf("process %d (%s)", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	// Under /reconciled and each daemon's own parent (/reconciled-HASH),
	// which goes with its last container.
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/reconciled*/" + e.prefix + "*")
	cgs2, _ := filepath.Glob("/sys/fs/cgroup/reconciled*/" + e.prefix + "*")
	if p := e.cgroupParent(); p != "" && p != "/reconciled" {
		own, _ := filepath.Glob("/sys/fs/cgroup/*" + p)
		own2, _ := filepath.Glob("/sys/fs/cgroup" + p)
		cgs = append(append(cgs, own...), own2...)
	}
	for _, c := range append(cgs, cgs2...) {
		out = append(out, "cgroup "+c)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == filepath.Join(e.state, "rootfs") {
			continue // the daemon's shared bind, for its whole life (cleanup removes it)
		}
		if strings.Contains(l, e.dir) || strings.Contains(l, e.prefix) {
			out = append(out, "mount "+l)
		}
	}
	return out
}

// cgroupParent is the cgroupfs parent the daemon recorded in its state
// directory ("" before it first ran).
func (e *env) cgroupParent() string {
	data, err := os.ReadFile(filepath.Join(e.state, "cgroup-parent.json"))
	if err != nil {
		return ""
	}
	var p struct{ Cgroupfs string }
	if json.Unmarshal(data, &p) != nil {
		return ""
	}
	return p.Cgroupfs
}

// client reaches the daemon through the binary; a wait fails as soon as
// a started daemon exits, with the tail of its output.
func (e *env) client() daemontest.Daemon {
	d := daemontest.Daemon{Bin: bin, State: e.state}
	if e.daemon != nil {
		d.Exited = e.exited
		d.Log = func() string {
			data, _ := os.ReadFile(e.stderr)
			return testutil.Tail(string(data), 40)
		}
	}
	return d
}

// statusOf runs `reconciled status NAME -o json`.
func (e *env) statusOf(name string) *container {
	e.t.Helper()
	c, err := e.client().StatusOf(name)
	if err != nil {
		e.t.Fatalf("status %s: %v", name, err)
	}
	return c
}

// waitFor polls status until cond holds, failing the test after timeout.
func (e *env) waitFor(what string, timeout time.Duration, cond func(*report) bool) *report {
	e.t.Helper()
	return e.client().WaitFor(e.t, what, timeout, cond)
}

// waitRunning waits until container name runs and returns it.
func (e *env) waitRunning(name string, timeout time.Duration) *container {
	e.t.Helper()
	return e.client().WaitRunning(e.t, timeout, name).Get(name)
}

// write puts a manifest into the directory as deployment tools do (see
// testutil.WriteManifest). It returns the content's sha256.
func (e *env) write(file, content string) string {
	e.t.Helper()
	return testutil.WriteManifest(e.t, e.manifests, file, content)
}

// deleteGone removes the manifest file of container name, waits until the
// daemon no longer shows it, and checks that pid, its last process, no
// longer runs and that the pids cgroup it ran in is gone.
func (e *env) deleteGone(file, name string, pid int) {
	e.t.Helper()
	cg, err := cgroupDir(pid, "pids")
	if err != nil {
		// A unified (v2) host: the one hierarchy.
		if cg, err = cgroupDir(pid, ""); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(e.manifests, file)); err != nil {
		e.t.Fatal(err)
	}
	e.waitFor(name+" gone", 30*time.Second, func(r *report) bool { return r.Get(name) == nil })
	if alive(pid) {
		e.t.Errorf("pid %d still runs after its manifest was removed", pid)
	}
	if _, err := os.Stat(cg); !os.IsNotExist(err) {
		e.t.Errorf("cgroup %s left: %v", cg, err)
	}
}

// waitLogs waits until `reconciled logs NAME` prints text (10s at most).
func (e *env) waitLogs(name, text string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command(bin, "logs", "--state", e.state, name).CombinedOutput()
		if strings.Contains(string(out), text) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("reconciled logs %s: %q", name, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSeen waits until the daemon has read file with the given content.
func (e *env) waitSeen(file, hash string) *report {
	e.t.Helper()
	path := filepath.Join(e.manifests, file)
	return e.waitFor(file+" read", 20*time.Second, func(r *report) bool {
		for _, f := range r.Files {
			if f.Path == path && f.ContentHash == hash {
				return true
			}
		}
		return false
	})
}

// manifest is a container on the host's root, read-only, as nobody.
func manifest(name, command, extra string) string { return daemontest.Manifest(name, command, extra) }

// alive says whether pid runs (not a zombie).
func alive(pid int) bool { return proc.Exists(pid) }

// cgroupDir is the directory of pid's cgroup in the v1 controller ctrl (or
// the unified hierarchy when ctrl is ""), from /proc/PID/cgroup.
func cgroupDir(pid int, ctrl string) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == ctrl {
				return filepath.Join("/sys/fs/cgroup", ctrl, parts[2]), nil
			}
		}
	}
	return "", fmt.Errorf("process %d has no %q cgroup", pid, ctrl)
}
