package test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/testutil"
)

// The reconciled binary, built once.
var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	executor.MaybeRunStage()
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func reconciledBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		// RECONCILED_BIN names a prebuilt binary, for a host without Go
		// (the cgroup v2 test machine runs a `go test -c` build).
		if prebuilt := os.Getenv("RECONCILED_BIN"); prebuilt != "" {
			binPath, binErr = filepath.Abs(prebuilt)
			return
		}
		binDir, binErr = os.MkdirTemp("", "reconciled-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "reconciled")
		binErr = testutil.BuildShipped(context.Background(), binPath, "") // as shipped
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// rt drives `reconciled runtime --root <tmp>` as a user would.
type rt struct {
	t    *testing.T
	bin  string
	root string
}

func newRT(t *testing.T) *rt {
	t.Helper()
	testutil.RequireRoot(t)
	return &rt{t: t, bin: reconciledBin(t), root: filepath.Join(t.TempDir(), "state")}
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs one CLI command. Its stdout and stderr are files, not pipes: a
// container started by it inherits them and may outlive it.
func (r *rt) run(args ...string) result {
	return r.runWith(nil, args...)
}

func (r *rt) runWith(extra []*os.File, args ...string) result {
	r.t.Helper()
	dir := r.t.TempDir()
	out, _ := os.Create(filepath.Join(dir, "stdout"))
	errf, _ := os.Create(filepath.Join(dir, "stderr"))
	defer out.Close()
	defer errf.Close()
	cmd := exec.Command(r.bin, append([]string{"runtime", "--root", r.root}, args...)...)
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = out, errf, extra
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("%v: %v", args, err)
	}
	o, _ := os.ReadFile(out.Name())
	e, _ := os.ReadFile(errf.Name())
	return result{string(o), string(e), code}
}

// ok runs a command that must succeed and returns its stdout.
func (r *rt) ok(args ...string) string {
	r.t.Helper()
	res := r.run(args...)
	if res.code != 0 {
		r.t.Fatalf("reconciled runtime %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

func (r *rt) state(id string) executor.State {
	r.t.Helper()
	var st executor.State
	out := r.ok("state", id)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		r.t.Fatalf("state %s: %v\n%s", id, err, out)
	}
	return st
}

// cleanup deletes id (forcefully) when the test ends.
func (r *rt) cleanup(id string) {
	r.t.Cleanup(func() { r.run("delete", "--force", id) })
}

// bundle writes a busybox bundle whose spec is the default one with args,
// changed by edit, and returns its directory.
func bundle(t *testing.T, edit func(*specs.Spec), args ...string) string {
	t.Helper()
	rootfs := testutil.BusyboxRootfs(t)
	dir := filepath.Dir(rootfs)
	s := testutil.DefaultSpec(args...)
	if edit != nil {
		edit(s)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runContainer runs a container to completion with `run` and returns what
// it printed and its exit code.
func (r *rt) runContainer(id string, edit func(*specs.Spec), args ...string) result {
	r.t.Helper()
	b := bundle(r.t, edit, args...)
	r.cleanup(id)
	return r.run("run", "--bundle", b, id)
}

func alive(pid int) bool { return proc.Exists(pid) }

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunExitCode(t *testing.T) {
	r := newRT(t)
	res := r.runContainer("exit-code", nil, "sh", "-c", "echo out; echo err >&2; exit 3")
	if res.code != 3 {
		t.Fatalf("exit code %d, want 3 (stderr %q)", res.code, res.stderr)
	}
	if res.stdout != "out\n" || res.stderr != "err\n" {
		t.Errorf("stdout %q stderr %q", res.stdout, res.stderr)
	}
	if out := r.run("state", "exit-code"); out.code == 0 {
		t.Errorf("state after run: container still exists: %s", out.stdout)
	}
}

func TestLifecycle(t *testing.T) {
	r := newRT(t)
	b := bundle(t, nil, "sleep", "1000")
	id := "life"
	r.cleanup(id)
	pidFile := filepath.Join(t.TempDir(), "pid")
	r.ok("create", "--bundle", b, "--pid-file", pidFile, id)

	// Every command below is a new process: the creator is gone.
	st := r.state(id)
	if st.Status != executor.StatusCreated || st.Pid <= 0 || st.Bundle != b || st.ID != id || st.OCIVersion == "" {
		t.Fatalf("after create: %+v", st)
	}
	if data, _ := os.ReadFile(pidFile); string(data) != strconv.Itoa(st.Pid) {
		t.Errorf("pid file says %q, state says %d", data, st.Pid)
	}
	if !alive(st.Pid) {
		t.Fatalf("init %d not alive after create", st.Pid)
	}
	if res := r.run("kill", id, "0"); res.code != 0 {
		t.Errorf("kill 0 of a created container: %s", res.stderr)
	}
	r.ok("start", id)
	st = r.state(id)
	if st.Status != executor.StatusRunning || st.Started.IsZero() {
		t.Fatalf("after start: %+v", st)
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", st.Pid)); strings.TrimSpace(string(comm)) != "sleep" {
		t.Errorf("init runs %q, want sleep", comm)
	}
	if res := r.run("start", id); res.code == 0 {
		t.Errorf("second start succeeded")
	}
	list := r.ok("list")
	if !strings.Contains(list, id) || !strings.Contains(list, "running") {
		t.Errorf("list:\n%s", list)
	}
	var sts []executor.State
	if err := json.Unmarshal([]byte(r.ok("list", "-o", "json")), &sts); err != nil || len(sts) != 1 || sts[0].ID != id {
		t.Errorf("list -o json: %v %+v", err, sts)
	}

	if res := r.run("delete", id); res.code == 0 || !strings.Contains(res.stderr, "running") {
		t.Fatalf("delete of a running container: exit %d, %q", res.code, res.stderr)
	}
	r.ok("kill", id, "KILL")
	waitGone(t, st.Pid)
	st = waitState(t, r, id, executor.StatusStopped)
	if !st.Exited || st.ExitCode != 137 || st.ExitSignal != "SIGKILL" || st.Finished.IsZero() {
		t.Errorf("after kill: %+v", st)
	}
	if res := r.run("kill", id); res.code == 0 {
		t.Errorf("kill of a stopped container succeeded")
	}
	r.ok("delete", id)
	if res := r.run("state", id); res.code == 0 || !strings.Contains(res.stderr, "does not exist") {
		t.Errorf("state after delete: exit %d, %q", res.code, res.stderr)
	}
	if entries, _ := os.ReadDir(r.root); len(entries) != 0 {
		t.Errorf("state root not empty after delete: %v", entries)
	}
}

// TestRuntimePauseResume pauses and resumes through the runtime CLI, which
// has no daemon to tell (it panicked on a nil --state after pausing).
func TestRuntimePauseResume(t *testing.T) {
	r := newRT(t)
	id := fmt.Sprintf("pause-%d", os.Getpid())
	r.cleanup(id)
	r.ok("create", "--bundle", bundle(t, nil, "sleep", "1000"), id)
	r.ok("start", id)
	r.ok("pause", id)
	if st := r.state(id); st.Status != executor.StatusPaused {
		t.Fatalf("after pause: %s", st.Status)
	}
	r.ok("resume", id)
	if st := r.state(id); st.Status != executor.StatusRunning {
		t.Fatalf("after resume: %s", st.Status)
	}
}

// waitState polls state until the status is want (the monitor records the
// exit a moment after the process dies).
func waitState(t *testing.T, r *rt, id string, want executor.Status) executor.State {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := r.state(id)
		if st.Status == want && (want != executor.StatusStopped || st.Exited) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is %s, want %s", id, st.Status, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDeleteForce(t *testing.T) {
	r := newRT(t)
	b := bundle(t, nil, "sh", "-c", "sleep 1000 & sleep 1000")
	id := "force"
	r.cleanup(id)
	r.ok("create", "--bundle", b, id)
	r.ok("start", id)
	st := r.state(id)
	r.ok("delete", "--force", id)
	for _, pid := range []int{st.Pid, st.MonitorPid} {
		if alive(pid) {
			t.Errorf("process %d alive after delete --force", pid)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if bytes.Contains(mi, []byte(b)) || bytes.Contains(mi, []byte(r.root)) {
		t.Errorf("a mount of the container is left on the host:\n%s", mi)
	}
	if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
		t.Errorf("state dir left: %v", err)
	}
}

func TestDeleteCreated(t *testing.T) {
	r := newRT(t)
	b := bundle(t, nil, "true")
	r.cleanup("created")
	r.ok("create", "--bundle", b, "created")
	st := r.state("created")
	r.ok("delete", "created")
	waitGone(t, st.Pid)
}

func TestInvalidIDs(t *testing.T) {
	r := newRT(t)
	b := bundle(t, nil, "true")
	for _, id := range []string{"", ".hidden", "a/b", "..", "a..b", "x y", strings.Repeat("a", 129), "é"} {
		res := r.run("create", "--bundle", b, id)
		if res.code == 0 {
			r.run("delete", "--force", id)
			t.Errorf("create %q succeeded", id)
		} else if id != "" && !strings.Contains(res.stderr, "invalid container ID") {
			t.Errorf("create %q: %s", id, res.stderr)
		}
	}
	if entries, _ := os.ReadDir(r.root); len(entries) != 0 {
		t.Errorf("state root not empty: %v", entries)
	}
}

func TestAlreadyExists(t *testing.T) {
	r := newRT(t)
	b := bundle(t, nil, "sleep", "1000")
	r.cleanup("dup")
	r.ok("create", "--bundle", b, "dup")
	res := r.run("create", "--bundle", b, "dup")
	if res.code == 0 || !strings.Contains(res.stderr, "already exists") {
		t.Fatalf("second create: exit %d, %q", res.code, res.stderr)
	}
	if st := r.state("dup"); st.Status != executor.StatusCreated {
		t.Errorf("first container disturbed: %+v", st)
	}
}

func TestNotExist(t *testing.T) {
	r := newRT(t)
	for _, args := range [][]string{{"state", "nope"}, {"start", "nope"}, {"kill", "nope"}, {"delete", "nope"}} {
		if res := r.run(args...); res.code == 0 || !strings.Contains(res.stderr, "does not exist") {
			t.Errorf("%v: exit %d, %q", args, res.code, res.stderr)
		}
	}
}

// TestInsideView checks the process's view from inside, the way a user
// would.
// bothInits runs f once with the runner init (executor/runner.go) and
// once with the Go init (executor.GoInitEnv), after checking that a
// container created with spec edit's bundle waits as that init.
func bothInits(t *testing.T, edit func(*specs.Spec), f func(t *testing.T)) {
	for _, c := range []struct{ name, goInit, exe string }{
		{"runner-init", "", "memfd:reconciled-setup"},
		{"go-init", "1", "memfd:reconciled-waiter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(executor.GoInitEnv, c.goInit)
			r := newRT(t)
			b := bundle(t, edit, "true")
			r.cleanup("which-init")
			r.ok("create", "--bundle", b, "which-init")
			waitInitExe(t, r.state("which-init").Pid, c.exe)
			r.ok("delete", "--force", "which-init")
			f(t)
		})
	}
}

// TestInsideView: what the process sees of what the spec asks for, the
// same with either init.
func TestInsideView(t *testing.T) {
	bothInits(t, nil, insideView)
}

func insideView(t *testing.T) {
	r := newRT(t)
	umask := uint32(0o027)
	res := r.runContainer("view", func(s *specs.Spec) {
		s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 20}, Umask: &umask}
		s.Process.Cwd = "/tmp"
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding:    []string{"CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"},
			Effective:   []string{"CAP_NET_BIND_SERVICE"},
			Permitted:   []string{"CAP_NET_BIND_SERVICE", "CAP_KILL"},
			Inheritable: []string{"CAP_NET_BIND_SERVICE"},
			Ambient:     []string{"CAP_NET_BIND_SERVICE"},
		}
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 777, Soft: 555}}
		s.Process.Env = append(s.Process.Env, "FOO=bar")
		s.Hostname = "inside"
		s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
	}, "sh", "-c", `grep -E '^(Cap|NoNewPrivs)' /proc/self/status; echo "host=$(hostname)"; echo "id=$(id)"; echo "nofile=$(ulimit -n)"; echo "pwd=$(pwd)"; echo "umask=$(umask)"; echo "foo=$FOO home=$HOME"; echo "fwd=$(cat /proc/sys/net/ipv4/ip_forward)"; ls /proc/self/fd | tr '\n' ' '; echo; ifconfig lo | grep -o UP`)
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	out := res.stdout
	// A non-root process after exec: permitted = effective = ambient.
	for _, want := range []string{
		"CapInh:\t0000000000000400", "CapPrm:\t0000000000000400", "CapEff:\t0000000000000400",
		"CapBnd:\t0000000000000421", "CapAmb:\t0000000000000400", "NoNewPrivs:\t1",
		"host=inside", "id=uid=1000 gid=1000 groups=10,20", "nofile=555", "pwd=/tmp", "umask=0027",
		"foo=bar home=/", "fwd=1", "\nUP\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// TestInitSetupFailure: a create whose setup fails in the init (an
// rlimit the kernel refuses; a missing working directory; a process that
// is not there) fails with what failed, the same with either init, and
// leaves no container behind.
func TestInitSetupFailure(t *testing.T) {
	bothInits(t, nil, func(t *testing.T) {
		r := newRT(t)
		for _, c := range []struct {
			name string
			edit func(*specs.Spec)
			args []string
			want string
		}{
			{"rlimit", func(s *specs.Spec) {
				s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 100, Soft: 200}}
			}, []string{"true"}, "set RLIMIT_NOFILE: prlimit: invalid argument"},
			{"cwd", func(s *specs.Spec) { s.Process.Cwd = "/nonexistent" }, []string{"true"}, "process.cwd /nonexistent: no such file or directory"},
			{"exec", nil, []string{"/nonexistent/program"}, "exec /nonexistent/program: no such file or directory"},
		} {
			id := "fail-" + c.name
			b := bundle(t, c.edit, c.args...)
			r.cleanup(id)
			res := r.run("create", "--bundle", b, id)
			if res.code == 0 || !strings.Contains(res.stderr, "create container "+id+": "+c.want) {
				t.Errorf("%s: create exit %d, stderr %q; want it to fail with %q", c.name, res.code, res.stderr, c.want)
			}
			if res := r.run("state", id); res.code == 0 {
				t.Errorf("%s: the failed container is still there: %s", c.name, res.stdout)
			}
		}
	})
}

func TestRootCaps(t *testing.T) {
	r := newRT(t)
	res := r.runContainer("rootcaps", nil, "grep", "-E", "^Cap", "/proc/self/status")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	// CAP_KILL(5), CAP_NET_BIND_SERVICE(10), CAP_AUDIT_WRITE(29).
	want := "CapInh:\t0000000000000000\nCapPrm:\t0000000020000420\nCapEff:\t0000000020000420\nCapBnd:\t0000000020000420\nCapAmb:\t0000000000000000\n"
	if res.stdout != want {
		t.Errorf("got\n%s\nwant\n%s", res.stdout, want)
	}
}

func TestNamespaces(t *testing.T) {
	r := newRT(t)
	res := r.runContainer("ns", nil, "sh", "-c", "for n in pid net mnt ipc uts cgroup; do echo $n $(readlink /proc/self/ns/$n); done")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
		n, link, _ := strings.Cut(line, " ")
		host, err := os.Readlink("/proc/self/ns/" + n)
		if err != nil {
			t.Fatal(err)
		}
		if (link == host) != (n == "cgroup") {
			t.Errorf("%s namespace: container %s, host %s", n, link, host)
		}
	}
}

// TestJoinNamespace: a second container joins the first one's network and
// IPC namespaces by path.
func TestJoinNamespace(t *testing.T) {
	r := newRT(t)
	b := bundle(t, nil, "sleep", "1000")
	r.cleanup("owner")
	r.ok("create", "--bundle", b, "owner")
	owner := r.state("owner")
	netns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", owner.Pid))
	ipcns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/ipc", owner.Pid))
	pidns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", owner.Pid))
	res := r.runContainer("joiner", func(s *specs.Spec) {
		for i, ns := range s.Linux.Namespaces {
			switch ns.Type {
			case specs.NetworkNamespace, specs.IPCNamespace, specs.PIDNamespace:
				s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/%s", owner.Pid, map[specs.LinuxNamespaceType]string{
					specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.PIDNamespace: "pid"}[ns.Type])
			}
		}
	}, "sh", "-c", "for n in net ipc pid; do readlink /proc/self/ns/$n; done")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if want := netns + "\n" + ipcns + "\n" + pidns + "\n"; res.stdout != want {
		t.Errorf("joined namespaces:\n%s\nwant\n%s", res.stdout, want)
	}
}

// A container that joins a mount namespace by path (here one held by
// `unshare --mount`) gets its root filesystem and mounts set up there, as
// runc does; the host's mounts are untouched. Joining the runtime's own
// mount namespace is refused: its root would replace the host's.
func TestJoinMountNamespace(t *testing.T) {
	r := newRT(t)
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "sleep", "1000")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	mntns := fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid)
	// unshare has made the namespace once the holder runs sleep.
	waitFor(t, "the holder's own mount namespace", func() bool {
		l, _ := os.Readlink(mntns)
		h, _ := os.Readlink("/proc/self/ns/mnt")
		return l != "" && l != h
	})
	// The host's mounts below the bundle: what a setup that leaked out
	// of the joined namespace would leave (other tests may mount
	// elsewhere meanwhile).
	var b string
	hostMounts := func() []string {
		data, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], b) {
				out = append(out, l)
			}
		}
		return out
	}
	joinMnt := func(path string) func(*specs.Spec) {
		return func(s *specs.Spec) {
			for i, ns := range s.Linux.Namespaces {
				if ns.Type == specs.MountNamespace {
					s.Linux.Namespaces[i].Path = path
				}
			}
		}
	}
	b = bundle(t, joinMnt(mntns), "sh", "-c", "cat /marker; readlink /proc/self/ns/mnt; grep -c ' /proc ' /proc/self/mountinfo")
	before := hostMounts()
	if err := os.WriteFile(filepath.Join(b, "rootfs", "marker"), []byte("in-the-rootfs\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := testutil.Name(t, 40)
	r.cleanup(id)
	res := r.run("run", "--bundle", b, id)
	want, _ := os.Readlink(mntns)
	if res.code != 0 || res.stdout != "in-the-rootfs\n"+want+"\n1\n" {
		t.Fatalf("in a joined mount namespace: exit %d, stdout %q, stderr %q; want the rootfs's marker, %s and one /proc mount", res.code, res.stdout, res.stderr, want)
	}
	if after := hostMounts(); len(after) != len(before) {
		t.Errorf("the host's mounts below the bundle %s changed from %q to %q", b, before, after)
	}
	res = r.runContainer(testutil.Name(t, 40)+"-host", joinMnt("/proc/self/ns/mnt"), "true")
	if res.code == 0 || !strings.Contains(res.stderr, "the runtime's own") {
		t.Errorf("joining the runtime's own mount namespace: exit %d, stderr %q; want it refused", res.code, res.stderr)
	}
}

func TestNoFdLeak(t *testing.T) {
	r := newRT(t)
	// Host directories open in the CLI's parent, without close-on-exec.
	var extra []*os.File
	for _, p := range []string{"/", "/etc", r.bin} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		extra = append(extra, f)
	}
	b := bundle(t, nil, "sh", "-c", "ls /proc/self/fd | tr '\\n' ' '")
	r.cleanup("fds")
	res := r.runWith(extra, "run", "--bundle", b, "fds")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	// 0-2 and the fd ls itself opened to read the directory.
	if got := strings.Fields(res.stdout); strings.Join(got, " ") != "0 1 2 3" {
		t.Errorf("fds inside the container: %v", got)
	}
}

// TestCwdOutsideRoot: CVE-2024-21626, a cwd through a leaked fd.
func TestCwdOutsideRoot(t *testing.T) {
	r := newRT(t)
	for _, cwd := range []string{"/proc/self/fd/3", "/proc/self/cwd", "/proc/1/root"} {
		b := bundle(t, func(s *specs.Spec) { s.Process.Cwd = cwd }, "pwd")
		r.cleanup("cwd")
		f, _ := os.Open("/")
		res := r.runWith([]*os.File{f}, "run", "--bundle", b, "cwd")
		f.Close()
		if res.code == 0 {
			t.Errorf("cwd %s: container ran, pwd %q", cwd, res.stdout)
		}
	}
}

func fileHash(t *testing.T, p string) [32]byte {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// TestSelfExeProtection: CVE-2019-5736. The container cannot get at the
// runtime's binary for writing.
func TestSelfExeProtection(t *testing.T) {
	r := newRT(t)
	before := fileHash(t, r.bin)

	// The entrypoint is the runtime's own binary.
	b := bundle(t, nil, "/proc/self/exe")
	r.cleanup("selfexe")
	if res := r.run("create", "--bundle", b, "selfexe"); res.code == 0 {
		t.Errorf("a container whose entrypoint is /proc/self/exe was created")
	} else if !strings.Contains(res.stderr, "own binary") {
		t.Errorf("create: %s", res.stderr)
	}

	// A created container: the monitor runs our binary or, once the
	// container is created, the reaper; the waiting init either our binary
	// too, the waiter or the runner init (executor/waiter: all sealed
	// memfds). Our binary must be on a read-only mount; the memfds must
	// refuse writes.
	b = bundle(t, nil, "sh", "-c", "for f in /proc/*/exe; do echo x > $f; done; true")
	r.cleanup("exewrite")
	r.ok("create", "--bundle", b, "exewrite")
	st := r.state("exewrite")
	var held, sealed []int
	waiterFd := -1
	for _, pid := range []int{st.Pid, st.MonitorPid} {
		exe := fmt.Sprintf("/proc/%d/exe", pid)
		if link, _ := os.Readlink(exe); strings.Contains(link, "memfd:reconciled-waiter") || strings.Contains(link, "memfd:reconciled-setup") || strings.Contains(link, "memfd:reconciled-reaper") {
			fd, err := unix.Open(exe, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			sealed = append(sealed, fd)
			if pid == st.Pid {
				waiterFd = fd
			}
			continue
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(exe, &sfs); err != nil {
			t.Fatal(err)
		}
		if sfs.Flags&unix.ST_RDONLY == 0 {
			t.Errorf("%s is not on a read-only mount", exe)
		}
		// What an attacker would do: hold the file, wait for every runtime
		// process to exit (no more ETXTBSY), then reopen it for writing.
		fd, err := unix.Open(exe, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		held = append(held, fd)
	}
	if waiter.Available() && waiterFd < 0 {
		t.Errorf("the created container's init is neither the waiter nor the runner init")
	}
	r.ok("start", "exewrite")
	waitState(t, r, "exewrite", executor.StatusStopped)
	r.ok("delete", "exewrite")
	waitGone(t, st.MonitorPid)
	for _, fd := range held {
		w, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(w)
			t.Errorf("the runtime binary was reopened for writing")
		} else if !errors.Is(err, unix.EROFS) {
			t.Errorf("reopen for writing: %v, want EROFS", err)
		}
	}
	for _, fd := range sealed {
		// Nothing executes the waiter or the reaper any more: only their
		// seals stand.
		w, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			_, err = unix.Write(w, []byte("x"))
			unix.Close(w)
		}
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("writing a sealed executable (waiter, reaper): %v, want EPERM (sealed)", err)
		}
	}
	if fileHash(t, r.bin) != before {
		t.Fatal("the runtime binary changed")
	}
}

// TestPidReuse: a state whose PID now belongs to another process (other
// start time) reads stopped, and kill never signals that process.
func TestPidReuse(t *testing.T) {
	r := newRT(t)
	b := bundle(t, nil, "sleep", "1000")
	r.cleanup("reuse")
	r.ok("create", "--bundle", b, "reuse")
	r.ok("start", "reuse")

	// The victim must have started in another clock tick than the
	// container's init (start times count ticks of 10 ms): a process that
	// has the same PID and start time is the same process to the kernel
	// and to every runtime. A fast create and start leave none between.
	init := r.state("reuse").Pid
	initStart, _, err := proc.StartTime(init)
	if err != nil {
		t.Fatal(err)
	}
	var victim *exec.Cmd
	for {
		victim = exec.Command("sleep", "1000")
		if err := victim.Start(); err != nil {
			t.Fatal(err)
		}
		if start, _, err := proc.StartTime(victim.Process.Pid); err != nil || start != initStart {
			break
		}
		victim.Process.Kill()
		victim.Wait()
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() { victim.Process.Kill(); victim.Wait() })

	// Point the state at the victim's PID with the container's start time.
	path := filepath.Join(r.root, "reuse", "state.json")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.Unmarshal(orig, &raw)
	realPid := raw["pid"]
	raw["pid"] = victim.Process.Pid
	forged, _ := json.Marshal(raw)
	if err := os.WriteFile(path, forged, 0o600); err != nil {
		t.Fatal(err)
	}
	if st := r.state("reuse"); st.Status != executor.StatusStopped {
		t.Errorf("status with a recycled PID: %s", st.Status)
	}
	if res := r.run("kill", "reuse", "KILL"); res.code == 0 {
		t.Errorf("kill succeeded on a recycled PID")
	}
	if !alive(victim.Process.Pid) {
		t.Fatal("the process that reused the PID was signalled")
	}
	raw["pid"] = realPid
	fixed, _ := json.Marshal(raw)
	os.WriteFile(path, fixed, 0o600)
}

func TestHooks(t *testing.T) {
	r := newRT(t)
	var rootfs string
	logTo := func(name string) specs.Hook {
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "echo " + name + " >> " + filepath.Join(rootfs, "hooklog")}}
	}
	b := bundle(t, func(s *specs.Spec) {
		rootfs = "ROOTFS"
	}, "true")
	rootfs = filepath.Join(b, "rootfs")
	stdinFile := filepath.Join(b, "stdin.json")
	s := readSpec(t, b)
	s.Hooks = &specs.Hooks{
		Prestart:        []specs.Hook{logTo("prestart")},
		CreateRuntime:   []specs.Hook{logTo("createRuntime"), {Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + stdinFile}}},
		CreateContainer: []specs.Hook{logTo("createContainer")},
		// Runs in the container: the path resolves in its root.
		StartContainer: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo startContainer >> /hooklog"}}},
		Poststart:      []specs.Hook{logTo("poststart")},
		Poststop:       []specs.Hook{logTo("poststop"), {Path: "/bin/false"}},
	}
	writeSpec(t, b, s)
	r.cleanup("hooks")
	res := r.run("run", "--bundle", b, "hooks")
	if res.code != 0 {
		t.Fatalf("run: exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "poststop") {
		t.Errorf("a failing poststop hook was not reported: %q", res.stderr)
	}
	got, _ := os.ReadFile(filepath.Join(rootfs, "hooklog"))
	want := "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\npoststop\n"
	if string(got) != want {
		t.Errorf("hooks ran:\n%s\nwant\n%s", got, want)
	}
	var st specs.State
	data, _ := os.ReadFile(stdinFile)
	if err := json.Unmarshal(data, &st); err != nil || st.ID != "hooks" || st.Pid <= 0 || st.Bundle != b {
		t.Errorf("hook stdin: %v %s", err, data)
	}
}

func TestFailingHook(t *testing.T) {
	r := newRT(t)
	for _, kind := range []string{"prestart", "createRuntime", "createContainer", "startContainer"} {
		t.Run(kind, func(t *testing.T) {
			b := bundle(t, nil, "sleep", "1000")
			s := readSpec(t, b)
			fail := []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo hook-says-no >&2; exit 7"}}}
			s.Hooks = &specs.Hooks{}
			switch kind {
			case "prestart":
				s.Hooks.Prestart = fail //nolint:staticcheck
			case "createRuntime":
				s.Hooks.CreateRuntime = fail
			case "createContainer":
				s.Hooks.CreateContainer = fail
			case "startContainer":
				s.Hooks.StartContainer = fail
			}
			writeSpec(t, b, s)
			id := "fail-" + strings.ToLower(kind)
			r.cleanup(id)
			res := r.run("create", "--bundle", b, id)
			if kind == "startContainer" {
				if res.code != 0 {
					t.Fatalf("create: %s", res.stderr)
				}
				res = r.run("start", id)
			}
			if res.code == 0 {
				t.Fatalf("%s hook failed, operation succeeded", kind)
			}
			if !strings.Contains(res.stderr, kind+" hook") || !strings.Contains(res.stderr, "hook-says-no") {
				t.Errorf("error does not name the hook: %q", res.stderr)
			}
			if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
				t.Errorf("container left after a failing %s hook", kind)
			}
		})
	}
}

// A SIGTERM to a create under way (here, while its createRuntime hook
// runs) ends it as a failed create: the hook is killed, the init is gone
// and nothing of the container is left, as after a failing hook.
func TestCreateInterruptedBySignal(t *testing.T) {
	r := newRT(t)
	id := testutil.Name(t, 40)
	hookPid := filepath.Join(t.TempDir(), "hook.pid")
	b := bundle(t, nil, "sleep", "1000")
	s := readSpec(t, b)
	s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo $$ > " + hookPid + "; exec sleep 60"}}}}
	writeSpec(t, b, s)
	r.cleanup(id)
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(r.bin, "runtime", "--root", r.root, "create", "--bundle", b, id)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	done := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	var hook int
	waitFor(t, "the createRuntime hook to run", func() bool {
		data, err := os.ReadFile(hookPid)
		hook, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil && hook > 0
	})
	st := r.state(id)
	if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("create still running 10 s after SIGTERM")
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("create after SIGTERM: %v, want exit status 1 (a failed create, not one killed by the signal)", waitErr)
	}
	msg, _ := os.ReadFile(out.Name())
	if !strings.Contains(string(msg), "createRuntime hook") || !strings.Contains(string(msg), "context canceled") {
		t.Errorf("create's error %q does not say that the createRuntime hook was cancelled", msg)
	}
	waitGone(t, hook)
	waitGone(t, st.Pid)
	if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
		t.Errorf("state directory left after an interrupted create: %v", err)
	}
}

func readSpec(t *testing.T, b string) *specs.Spec {
	t.Helper()
	var s specs.Spec
	data, err := os.ReadFile(filepath.Join(b, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func writeSpec(t *testing.T, b string, s *specs.Spec) {
	t.Helper()
	data, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(b, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCgroup(t *testing.T) {
	r := newRT(t)
	limit := int64(64 << 20)
	b := bundle(t, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	}, "sleep", "1000")
	r.cleanup("cg")
	r.ok("create", "--bundle", b, "cg")
	r.ok("start", "cg")
	st := r.state("cg")
	if len(st.CgroupPaths) == 0 {
		t.Fatalf("no cgroup paths in the state: %+v", st)
	}
	for ctrl, dir := range st.CgroupPaths {
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			t.Fatalf("%s: %v", ctrl, err)
		}
		if !strings.Contains("\n"+string(procs), "\n"+strconv.Itoa(st.Pid)+"\n") {
			t.Errorf("init %d not in %s: %q", st.Pid, dir, procs)
		}
	}
	if dir, ok := st.CgroupPaths["memory"]; ok {
		if got, _ := os.ReadFile(filepath.Join(dir, "memory.limit_in_bytes")); strings.TrimSpace(string(got)) != strconv.FormatInt(limit, 10) {
			t.Errorf("memory.limit_in_bytes = %q", got)
		}
	} else if dir, ok := st.CgroupPaths[""]; ok {
		if got, _ := os.ReadFile(filepath.Join(dir, "memory.max")); strings.TrimSpace(string(got)) != strconv.FormatInt(limit, 10) {
			t.Errorf("memory.max = %q", got)
		}
	}
	r.ok("delete", "--force", "cg")
	for _, dir := range st.CgroupPaths {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left after delete: %v", dir, err)
		}
	}
}

func TestOOMKilled(t *testing.T) {
	r := newRT(t)
	limit := int64(16 << 20)
	b := bundle(t, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
	}, "dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1")
	r.cleanup("oom")
	r.ok("create", "--bundle", b, "oom")
	r.ok("start", "oom")
	st := waitState(t, r, "oom", executor.StatusStopped)
	if !st.OOMKilled || st.ExitSignal != "SIGKILL" {
		t.Errorf("memory hog: %+v", st)
	}
}

// cgroupDirs lists the directories of container id's default cgroup
// (DefaultParent/id) in every hierarchy.
func cgroupDirs(id string) []string {
	v1, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*/reconciled", id))
	v2, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/reconciled", id))
	return append(v1, v2...)
}

// A create killed before it finished (here while a createRuntime hook
// blocks, after the monitor, the init and the cgroup exist) leaves a
// creating container: the monitor kills the init when its creator is
// gone, and delete --force removes the rest.
func TestKilledMidCreate(t *testing.T) {
	r := newRT(t)
	id := testutil.Name(t, 40)
	b := bundle(t, nil, "sleep", "1000")
	hookPid := filepath.Join(t.TempDir(), "hook.pid")
	s := readSpec(t, b)
	s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{
		Path: "/bin/sh", Args: []string{"sh", "-c", "echo $$ > " + hookPid + ".tmp; mv " + hookPid + ".tmp " + hookPid + "; exec sleep 60"},
	}}}
	writeSpec(t, b, s)
	r.cleanup(id)

	cmd := exec.Command(r.bin, "runtime", "--root", r.root, "create", "--bundle", b, id)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	var hook int
	deadline := time.Now().Add(10 * time.Second)
	for hook == 0 {
		if data, err := os.ReadFile(hookPid); err == nil {
			hook, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		}
		if time.Now().After(deadline) {
			t.Fatal("the createRuntime hook never ran")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Cleanup(func() { unix.Kill(hook, unix.SIGKILL) })

	st := r.state(id)
	if st.Status != executor.StatusCreating || st.Pid <= 0 || st.MonitorPid <= 0 {
		t.Fatalf("during create: %+v", st)
	}
	if len(cgroupDirs(id)) == 0 {
		t.Fatalf("no cgroup for %s during create", id)
	}
	if res := r.run("delete", id); res.code == 0 {
		t.Errorf("delete without --force of a creating container succeeded")
	}

	cmd.Process.Kill()
	cmd.Wait()
	// Its creator gone, the monitor kills the init.
	waitGone(t, st.Pid)
	r.ok("delete", "--force", id)
	for _, pid := range []int{st.Pid, st.MonitorPid} {
		if alive(pid) {
			t.Errorf("process %d alive after delete --force", pid)
		}
	}
	if dirs := cgroupDirs(id); len(dirs) > 0 {
		t.Errorf("cgroups left after delete --force: %v", dirs)
	}
	if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
		t.Errorf("state dir left: %v", err)
	}
}

// A process that exits at once is recorded as started before it finished.
func TestStartedBeforeFinished(t *testing.T) {
	r := newRT(t)
	id := testutil.Name(t, 40)
	b := bundle(t, nil, "true")
	r.cleanup(id)
	for i := 0; i < 5; i++ {
		r.ok("create", "--bundle", b, id)
		r.ok("start", id)
		st := waitState(t, r, id, executor.StatusStopped)
		if st.Started.IsZero() || st.Finished.Before(st.Started) {
			t.Fatalf("started %v, finished %v", st.Started, st.Finished)
		}
		r.ok("delete", id)
	}
}

// Delete --force of a container whose cgroup is frozen (paused) thaws it
// so that the killed processes exit.
func TestDeleteFrozen(t *testing.T) {
	r := newRT(t)
	id := testutil.Name(t, 40)
	b := bundle(t, nil, "sleep", "1000")
	r.cleanup(id)
	r.ok("create", "--bundle", b, id)
	r.ok("start", id)
	st := r.state(id)
	if dir, ok := st.CgroupPaths["freezer"]; ok {
		if err := os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("FROZEN"), 0); err != nil {
			t.Fatal(err)
		}
	} else if dir, ok := st.CgroupPaths[""]; ok {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("1"), 0); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Skip("no freezer for the container's cgroup")
	}
	r.ok("delete", "--force", id)
	for _, pid := range []int{st.Pid, st.MonitorPid} {
		if alive(pid) {
			t.Errorf("process %d alive after delete --force", pid)
		}
	}
	for _, dir := range st.CgroupPaths {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left after delete: %v", dir, err)
		}
	}
}

// A start cut short after the init exec'd (the process running start was
// killed between the exec and recording it) leaves a container recorded
// as created whose process runs: start records it running instead of
// waiting for an init that no longer waits.
func TestStartAfterInterruptedStart(t *testing.T) {
	r := newRT(t)
	id := testutil.Name(t, 40)
	b := bundle(t, nil, "sleep", "1000")
	r.cleanup(id)
	r.ok("create", "--bundle", b, id)
	// Release the init as start does, recording nothing.
	fifo, err := os.Open(filepath.Join(r.root, id, "exec.fifo"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, fifo) // EOF once the init exec'd
	fifo.Close()
	if st := r.state(id); st.Status != executor.StatusCreated {
		t.Fatalf("after the exec: %s", st.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.bin, "runtime", "--root", r.root, "start", id).CombinedOutput()
	if err != nil {
		t.Fatalf("start: %v: %s", err, out)
	}
	st := r.state(id)
	if st.Status != executor.StatusRunning || !alive(st.Pid) || st.Started.IsZero() {
		t.Fatalf("after start: %+v", st)
	}
}

// Once a container is created its monitor becomes the reaper (a few
// hundred bytes of machine code, executor/waiter): one thread holding
// almost no memory for the container's whole life, still named after the
// container in ps, and still recording the exit code and the signal.
func TestMonitorBecomesReaper(t *testing.T) {
	if !waiter.ReaperAvailable() {
		t.Skip("no reaper on this architecture (the Go monitor waits instead)")
	}
	r := newRT(t)
	b := bundle(t, nil, "sh", "-c", "exit 3")
	r.cleanup("reaped")
	r.ok("create", "--bundle", b, "reaped")
	st := r.state("reaped")
	status := func() string {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.MonitorPid))
		return string(data)
	}
	waitFor(t, "the monitor to become the reaper", func() bool {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.MonitorPid))
		return strings.Contains(exe, "memfd:reconciled-reaper")
	})
	s := status()
	if got := statusField(t, s, "Threads"); got != "1" {
		t.Errorf("the reaper has %s threads, want 1", got)
	}
	// VmRSS counts the pages it maps (its code, stack, vdso): tens of KiB.
	if kb, err := strconv.Atoi(strings.TrimSuffix(statusField(t, s, "VmRSS"), " kB")); err != nil || kb > 512 {
		t.Errorf("the reaper's RSS is %s, want well under 512 kB", statusField(t, s, "VmRSS"))
	}
	waitFor(t, "the reaper titled reconciled-monitor reaped", func() bool {
		args := cmdline(st.MonitorPid)
		return len(args) >= 2 && args[0] == "reconciled-monitor" && args[1] == "reaped"
	})
	r.ok("start", "reaped")
	waitState(t, r, "reaped", executor.StatusStopped)
	waitGone(t, st.MonitorPid)
	done := r.state("reaped")
	if !done.Exited || done.ExitCode != 3 || done.Finished.IsZero() {
		t.Errorf("after exit 3: %+v", done)
	}

	b = bundle(t, nil, "sleep", "1000")
	r.cleanup("reaped-kill")
	r.ok("create", "--bundle", b, "reaped-kill")
	st = r.state("reaped-kill")
	r.ok("start", "reaped-kill")
	r.ok("kill", "reaped-kill", "KILL")
	waitGone(t, st.MonitorPid)
	if done := r.state("reaped-kill"); !done.Exited || done.ExitCode != 137 || done.ExitSignal != "SIGKILL" {
		t.Errorf("after kill -9: exit %d signal %q exited %v, want 137 SIGKILL", done.ExitCode, done.ExitSignal, done.Exited)
	}
}

// A sysctl whose namespace the container does not own would change the
// host's value: the create is refused and the host keeps its value (runc
// refuses the same). With its own namespace the container may set it.
func TestSysctlsOfTheHostRefused(t *testing.T) {
	r := newRT(t)
	withoutNS := func(s *specs.Spec, drop specs.LinuxNamespaceType) {
		var keep []specs.LinuxNamespace
		for _, ns := range s.Linux.Namespaces {
			if ns.Type != drop {
				keep = append(keep, ns)
			}
		}
		s.Linux.Namespaces = keep
	}
	for _, tt := range []struct {
		key, value string
		ns         specs.LinuxNamespaceType
	}{
		{"fs.mqueue.queues_max", "77", specs.IPCNamespace},
		{"kernel.shmmni", "777", specs.IPCNamespace},
		{"net.ipv4.ping_group_range", "1 7", specs.NetworkNamespace},
		{"vm.swappiness", "7", ""},
	} {
		proc := "/proc/sys/" + strings.ReplaceAll(tt.key, ".", "/")
		before, err := os.ReadFile(proc)
		if err != nil {
			t.Fatal(err)
		}
		res := r.runContainer("sysctl", func(s *specs.Spec) {
			if tt.ns != "" {
				withoutNS(s, tt.ns)
			}
			s.Linux.Sysctl = map[string]string{tt.key: tt.value}
		}, "true")
		if res.code == 0 || !strings.Contains(res.stderr, tt.key) {
			t.Errorf("%s without its namespace: exit %d, stderr %q; want a refusal naming it", tt.key, res.code, res.stderr)
		}
		if after, _ := os.ReadFile(proc); string(after) != string(before) {
			t.Errorf("the host's %s changed: %q -> %q", tt.key, before, after)
		}
	}
	res := r.runContainer("sysctl-own", func(s *specs.Spec) {
		s.Linux.Sysctl = map[string]string{"fs.mqueue.queues_max": "77"}
	}, "cat", "/proc/sys/fs/mqueue/queues_max")
	if res.code != 0 || strings.TrimSpace(res.stdout) != "77" {
		t.Errorf("in its own IPC namespace: exit %d, %q %q", res.code, res.stdout, res.stderr)
	}
}

// A security field the runtime cannot enforce is an error naming it,
// never dropped; an ambient capability that cannot be raised (not
// inheritable) is skipped, and the container runs (as with runc).
func TestUnenforcedSecurityFieldsRefused(t *testing.T) {
	r := newRT(t)
	for field, edit := range map[string]func(*specs.Spec){
		"process.apparmorProfile": func(s *specs.Spec) { s.Process.ApparmorProfile = "docker-default" },
		"process.selinuxLabel":    func(s *specs.Spec) { s.Process.SelinuxLabel = "system_u:system_r:container_t:s0" },
		"linux.mountLabel":        func(s *specs.Spec) { s.Linux.MountLabel = "system_u:object_r:container_file_t:s0" },
		"linux.intelRdt":          func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{ClosID: "x"} },
		"linux.personality":       func(s *specs.Spec) { s.Linux.Personality = &specs.LinuxPersonality{Domain: "LINUX32"} },
		"linux.resources.rdma": func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{Rdma: map[string]specs.LinuxRdma{"mlx5_0": {HcaHandles: ptrTo[uint32](3)}}}
		},
		"linux.seccomp": func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"getpid"}, Action: specs.ActNotify}}}
		},
	} {
		res := r.runContainer("unenforced", edit, "true")
		if res.code == 0 || !strings.Contains(res.stderr, field) || !strings.Contains(res.stderr, "not supported") {
			t.Errorf("%s: exit %d, stderr %q; want a 'not supported' error naming the field", field, res.code, res.stderr)
		}
	}
	res := r.runContainer("ambient", func(s *specs.Spec) {
		s.Process.User = specs.User{UID: 1000, GID: 1000}
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"}, Ambient: []string{"CAP_KILL"},
		}
	}, "sh", "-c", "grep CapAmb /proc/self/status")
	// runc's default spec (`runc spec`) asks for exactly this: runc skips
	// them with a debug message, nothing in the container's output.
	if res.code != 0 || !strings.Contains(res.stdout, "CapAmb:\t0000000000000000") ||
		strings.Contains(res.stdout+res.stderr, "ambient") {
		t.Errorf("an ambient capability that is not inheritable: exit %d, stdout %q, stderr %q; want a run, without the capability and without a warning in the container's output", res.code, res.stdout, res.stderr)
	}
}

// A read-only root is read-only all the way down: a tmpfs mounted on the
// host below the bundle's rootfs comes with it, as read-only as the root.
// (A rootfs with nothing mounted below it is found so without reading
// mountinfo: rootfs.noChildMounts; this one takes the other way.)
func TestReadonlyRootSubmount(t *testing.T) {
	r := newRT(t)
	b := bundle(t, func(s *specs.Spec) { s.Root.Readonly = true }, "sh", "-c",
		"echo x > /home/planted 2>&1; echo x > /planted 2>&1; echo done")
	home := filepath.Join(b, "rootfs", "home")
	if err := unix.Mount("tmpfs", home, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(home, unix.MNT_DETACH) })
	id := testutil.Name(t, 40)
	r.cleanup(id)
	res := r.run("run", "--bundle", b, id)
	if res.code != 0 || strings.Count(res.stdout+res.stderr, "Read-only file system") != 2 {
		t.Errorf("writes below a read-only root: exit %d, %q %q; want two read-only errors", res.code, res.stdout, res.stderr)
	}
	for _, p := range []string{filepath.Join(home, "planted"), filepath.Join(b, "rootfs", "planted")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("a container with a read-only root wrote %s", p)
		}
	}
}

// A read-only host root is read-only all the way down: a host tmpfs
// mounted below / is as read-only inside as / itself, and a mount target
// missing on the host is not created there (containment issue, item 1).
func TestReadonlyHostRootAllTheWayDown(t *testing.T) {
	r := newRT(t)
	dir := t.TempDir()
	hostTmpfs := filepath.Join(dir, "host-tmpfs")
	if err := os.Mkdir(hostTmpfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", hostTmpfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(hostTmpfs, unix.MNT_DETACH) })
	hostRoot := func(s *specs.Spec) { s.Root = &specs.Root{Path: "/", Readonly: true} }
	res := r.runContainer("rohost", hostRoot, "sh", "-c",
		"echo x > "+hostTmpfs+"/planted 2>&1; echo x > "+dir+"/planted 2>&1; echo done")
	if res.code != 0 || strings.Count(res.stdout+res.stderr, "Read-only file system") != 2 {
		t.Errorf("writes below a read-only host root: exit %d, %q %q; want two read-only errors", res.code, res.stdout, res.stderr)
	}
	for _, p := range []string{filepath.Join(hostTmpfs, "planted"), filepath.Join(dir, "planted")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("a container with a read-only host root wrote %s", p)
		}
	}

	missing := filepath.Join(dir, "no-such-dir")
	res = r.runContainer("rohost-mnt", func(s *specs.Spec) {
		hostRoot(s)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: missing, Type: "tmpfs", Source: "tmpfs"})
	}, "true")
	if res.code == 0 {
		t.Errorf("a tmpfs on a target missing on the read-only host root was mounted")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("the runtime created %s on the host: %v", missing, err)
	}
}

// TestShippedStages: the binary built as make build builds it carries a
// lean build of itself for the container stages and the runtime command
// line (packaging/build.sh), which `reconciled version` reports, and a
// container's init and `reconciled runtime` run it: mapped from the
// binary's file at the address it is linked for (0x40000000), in place of
// reconciled itself.
func TestShippedStages(t *testing.T) {
	bin := reconciledBin(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("reconciled version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "container stages, runtime, reconciled-runc: the lean build appended (") {
		t.Fatalf("reconciled version does not report the appended stage binary:\n%s", out)
	}
	// With a startContainer hook the init waits for start itself (in Go,
	// not as the waiter): created, it is still the stage binary.
	r := newRT(t)
	id := testutil.Name(t, 40)
	b := bundle(t, func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/true"}}}
	}, "sleep", "100")
	r.cleanup(id)
	r.ok("create", "--bundle", b, id)
	st := r.state(id)
	if maps, ok := runsLean(t, st.Pid); !ok {
		t.Fatalf("the created container's init has no code of its executable mapped at 0x40000000 (the lean build):\n%s", maps)
	}
	r.ok("start", id)
	// `events ID` runs until the container exits: as `reconciled runtime`
	// and as reconciled-runc (a link to the binary, as installed for
	// engines).
	runc := filepath.Join(t.TempDir(), "reconciled-runc")
	if err := os.Symlink(bin, runc); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{bin, "runtime"}, {runc}} {
		events := exec.Command(argv[0], append(argv[1:], "--root", r.root, "events", "--interval", "0", id)...)
		if err := events.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { events.Process.Kill(); events.Wait() })
		deadline := time.Now().Add(10 * time.Second)
		for {
			maps, ok := runsLean(t, events.Process.Pid)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s events has no code of its executable mapped at 0x40000000 (the lean build):\n%s", strings.Join(argv, " "), maps)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// runsLean reports whether process pid runs the lean build appended to its
// executable: code of the executable mapped where it is linked.
func runsLean(t *testing.T, pid int) (string, bool) {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	var exe unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &exe); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(maps), "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && strings.HasPrefix(f[0], "40000000-") && f[4] == strconv.FormatUint(exe.Ino, 10) && strings.Contains(f[1], "x") {
			return string(maps), true
		}
	}
	return string(maps), false
}
