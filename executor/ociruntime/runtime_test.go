package ociruntime_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/executor/ociruntime"
	"reconciled.dev/reconciled/internal/testutil"
)

// env is one test's runc runtime, state and runtime roots and rootfs.
type env struct {
	rt     *ociruntime.Runtime
	cg     cgroups.Driver
	rootfs string
	dir    string
	runc   string
}

func newEnv(t *testing.T, path string) *env {
	t.Helper()
	testutil.RequireRoot(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		testutil.SkipOrFail(t, "runc is not installed: %v", err)
	}
	cg, err := cgroups.NewCgroupfs()
	if err != nil {
		t.Fatal(err)
	}
	if path == "" {
		path = runc
	}
	dir := t.TempDir()
	rt, err := ociruntime.New(ociruntime.Config{
		Name: "runc", Path: path, StateRoot: filepath.Join(dir, "state"),
		RuntimeRoot: filepath.Join(dir, "runc"), Cgroups: cg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{rt: rt, cg: cg, rootfs: testutil.BusyboxRootfs(t), dir: dir, runc: runc}
}

// spec is the spec the daemon generates for a manifest with this command.
func (e *env) spec(t *testing.T, name, command string, extra ...string) *specs.Spec {
	t.Helper()
	src := "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: " + name + "}\nspec:\n  root: {path: " + e.rootfs + "}\n  command: [/bin/sh, -c, " + strconv.Quote(command) + "]\n  runtime: runc\n" + strings.Join(extra, "")
	cs, errs := desired.Parse("t.yaml", []byte(src), desired.ParseOptions{})
	if len(errs) > 0 {
		t.Fatalf("parse: %v", desired.Errors(errs))
	}
	return cs[0].Spec
}

// create creates container name and removes it (and anything runc left)
// when the test ends.
func (e *env) create(t *testing.T, name, command string, extra ...string) (logPath string) {
	t.Helper()
	logPath = filepath.Join(e.dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	t.Cleanup(func() {
		ctx := context.Background()
		if err := e.rt.Delete(ctx, name); err != nil && !errors.Is(err, executor.ErrNotExist) {
			t.Errorf("cleanup: %v", err)
		}
		exec.Command(e.runc, "--root", filepath.Join(e.dir, "runc"), "delete", "--force", name).Run()
		if m, err := e.cg.Manager(name, ""); err == nil {
			m.Destroy(ctx)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.rt.Create(ctx, name, filepath.Join(e.dir, "bundle-"+name), ociruntime.CreateOptions{
		Spec: e.spec(t, name, command, extra...), Stdout: logf, Stderr: logf,
	}); err != nil {
		t.Fatalf("create: %v", err)
	}
	return logPath
}

func pidAlive(pid int) bool { return pid > 0 && unix.Kill(pid, 0) == nil }

func TestLifecycleKilled(t *testing.T) {
	e := newEnv(t, "")
	name := testutil.Name(t, 40)
	ctx := context.Background()
	logPath := e.create(t, name, "echo hello from runc; exec sleep 1000")

	st, err := executor.ReadState(e.rt.StateRoot(), name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != executor.StatusCreated || !pidAlive(st.Pid) || st.PidStartTime == 0 || st.Annotations[ociruntime.AnnotationRuntime] != "runc" || st.Created.IsZero() {
		t.Fatalf("after create: %+v", st)
	}
	if err := e.rt.Start(ctx, name); err != nil {
		t.Fatalf("start: %v", err)
	}
	st, err = executor.ReadState(e.rt.StateRoot(), name)
	if err != nil || st.Status != executor.StatusRunning || st.Started.IsZero() {
		t.Fatalf("after start: %+v, %v", st, err)
	}
	// The log gets the container's output; the cgroup is where the
	// daemon's manager looks.
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(logPath)
		if strings.Contains(string(data), "hello from runc") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %q lacks the container's output", data)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m, err := e.cg.Manager(name, "")
	if err != nil {
		t.Fatal(err)
	}
	pids, err := m.Procs(ctx)
	if err != nil || len(pids) == 0 || !slices.Contains(pids, st.Pid) {
		t.Fatalf("cgroup procs %v (%v), want the init %d", pids, err, st.Pid)
	}

	if err := e.rt.Kill(ctx, name, syscall.SIGKILL, false); err != nil {
		t.Fatalf("kill: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err = e.rt.Wait(wctx, name)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if !st.Exited || st.ExitCode != 137 || st.ExitSignal != "SIGKILL" || st.Finished.Before(st.Started) {
		t.Fatalf("after kill -9: exited %v code %d signal %q finished %v started %v", st.Exited, st.ExitCode, st.ExitSignal, st.Finished, st.Started)
	}
	if err := e.rt.Kill(ctx, name, syscall.SIGTERM, false); !errors.Is(err, executor.ErrNotRunning) {
		t.Errorf("kill of a stopped container: %v, want ErrNotRunning", err)
	}

	if err := e.rt.Delete(ctx, name); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := executor.ReadState(e.rt.StateRoot(), name); !errors.Is(err, executor.ErrNotExist) {
		t.Errorf("state after delete: %v", err)
	}
	for _, p := range m.Paths() {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left after delete (%v)", p, err)
		}
	}
	if out, err := exec.Command(e.runc, "--root", filepath.Join(e.dir, "runc"), "state", name).CombinedOutput(); err == nil {
		t.Errorf("runc still knows %s after delete: %s", name, out)
	}
	if pidAlive(st.MonitorPid) {
		if s, _ := os.ReadFile("/proc/" + strconv.Itoa(st.MonitorPid) + "/cmdline"); strings.Contains(string(s), "reconciled-oci-monitor") {
			t.Errorf("monitor %d still runs after delete", st.MonitorPid)
		}
	}
}

func TestExitCodeRecorded(t *testing.T) {
	e := newEnv(t, "")
	name := testutil.Name(t, 40)
	ctx := context.Background()
	e.create(t, name, "exit 3")
	if err := e.rt.Start(ctx, name); err != nil {
		t.Fatalf("start: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := e.rt.Wait(wctx, name)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if !st.Exited || st.ExitCode != 3 || st.ExitSignal != "" || st.Status != executor.StatusStopped {
		t.Fatalf("exit: %+v", st)
	}
	// The native reader lists it like any container.
	list, err := executor.List(e.rt.StateRoot())
	if err != nil || len(list) != 1 || list[0].ID != name || list[0].ExitCode != 3 {
		t.Fatalf("List: %+v, %v", list, err)
	}
}

func TestOOMKillRecorded(t *testing.T) {
	e := newEnv(t, "")
	name := testutil.Name(t, 40)
	ctx := context.Background()
	e.create(t, name, "exec tail /dev/zero", "  resources: {memory: 16Mi}\n")
	if err := e.rt.Start(ctx, name); err != nil {
		t.Fatalf("start: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	st, err := e.rt.Wait(wctx, name)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if !st.Exited || !st.OOMKilled || st.ExitCode != 137 {
		t.Fatalf("tail /dev/zero in 16Mi: exited %v oomKilled %v code %d", st.Exited, st.OOMKilled, st.ExitCode)
	}
}

// A daemon started by systemd has NOTIFY_SOCKET set; the runtime must not
// get it (runc's start would wait for the container's READY=1).
func TestNotifySocketNotPassed(t *testing.T) {
	e := newEnv(t, "")
	sock := filepath.Join(e.dir, "notify.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	name := testutil.Name(t, 40)
	e.create(t, name, "exec sleep 1000")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.rt.Start(ctx, name); err != nil {
		t.Fatalf("start with NOTIFY_SOCKET set: %v", err)
	}
	if st, err := e.rt.State(ctx, name); err != nil || st.Status != executor.StatusRunning {
		t.Fatalf("state: %+v, %v", st, err)
	}
}

func TestUpdate(t *testing.T) {
	e := newEnv(t, "")
	name := testutil.Name(t, 40)
	ctx := context.Background()
	e.create(t, name, "exec sleep 1000")
	if err := e.rt.Start(ctx, name); err != nil {
		t.Fatalf("start: %v", err)
	}
	limit := int64(64 << 20)
	if err := e.rt.Update(ctx, name, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatalf("update: %v", err)
	}
	m, err := e.cg.Manager(name, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Stats(ctx)
	if err != nil || s.MemoryLimit != uint64(limit) {
		t.Fatalf("memory limit %d (%v), want %d", s.MemoryLimit, err, limit)
	}
}

// crun runs a container too; on a cgroup v1 "hybrid" host crun 1.8
// refuses it, and that is the container's error, with crun's reason.
func TestCrun(t *testing.T) {
	crun, err := exec.LookPath("crun")
	if err != nil {
		testutil.SkipOrFail(t, "crun is not installed: %v", err)
	}
	e := newEnv(t, crun)
	name := testutil.Name(t, 40)
	ctx := context.Background()
	var fs unix.Statfs_t
	hybrid := unix.Statfs("/sys/fs/cgroup/unified", &fs) == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC
	if hybrid {
		err := e.rt.Create(ctx, name, filepath.Join(e.dir, "bundle"), ociruntime.CreateOptions{Spec: e.spec(t, name, "true")})
		if !errors.Is(err, ociruntime.ErrRuntimeFailed) || !strings.Contains(err.Error(), "hybrid") {
			t.Fatalf("crun on a hybrid host: %v, want ErrRuntimeFailed with crun's reason", err)
		}
		if _, err := os.Stat(executor.StateDir(e.rt.StateRoot(), name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state directory left: %v", err)
		}
		return
	}
	e.create(t, name, "exec sleep 1000")
	if err := e.rt.Start(ctx, name); err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := e.rt.Kill(ctx, name, syscall.SIGKILL, false); err != nil {
		t.Fatalf("kill: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := e.rt.Wait(wctx, name)
	if err != nil || st.ExitCode != 137 {
		t.Fatalf("wait: %+v, %v", st, err)
	}
}

func TestMissingBinary(t *testing.T) {
	e := newEnv(t, "/nonexistent/runc")
	name := testutil.Name(t, 40)
	err := e.rt.Create(context.Background(), name, filepath.Join(e.dir, "bundle"), ociruntime.CreateOptions{Spec: e.spec(t, name, "true")})
	if !errors.Is(err, ociruntime.ErrRuntimeNotFound) || !strings.Contains(err.Error(), "/nonexistent/runc") {
		t.Fatalf("create with a missing binary: %v, want ErrRuntimeNotFound naming the path", err)
	}
	if _, err := os.Stat(executor.StateDir(e.rt.StateRoot(), name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left: %v", err)
	}
}

func TestHostRootRefused(t *testing.T) {
	e := newEnv(t, "")
	name := testutil.Name(t, 40)
	spec := e.spec(t, name, "true")
	spec.Root.Path = "/"
	err := e.rt.Create(context.Background(), name, filepath.Join(e.dir, "bundle"), ociruntime.CreateOptions{Spec: spec})
	if !errors.Is(err, executor.ErrNotSupported) || !strings.Contains(err.Error(), "root.path") {
		t.Fatalf("create with root /: %v, want ErrNotSupported naming root.path", err)
	}
	if _, err := os.Stat(executor.StateDir(e.rt.StateRoot(), name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left: %v", err)
	}
}

// A runtime binary removed while its container runs does not keep the
// container from being deleted: its processes, cgroup and state go.
func TestDeleteWithoutBinary(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		testutil.SkipOrFail(t, "runc is not installed: %v", err)
	}
	data, err := os.ReadFile(runc)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "runc-copy")
	if err := os.WriteFile(copyPath, data, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, copyPath)
	name := testutil.Name(t, 40)
	ctx := context.Background()
	e.create(t, name, "exec sleep 1000")
	if err := e.rt.Start(ctx, name); err != nil {
		t.Fatalf("start: %v", err)
	}
	st, err := e.rt.State(ctx, name)
	if err != nil || st.Status != executor.StatusRunning {
		t.Fatalf("state: %+v, %v", st, err)
	}
	m, err := e.cg.Manager(name, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(copyPath); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Kill(ctx, name, syscall.SIGTERM, false); !errors.Is(err, ociruntime.ErrRuntimeNotFound) {
		t.Errorf("kill without the binary: %v, want ErrRuntimeNotFound", err)
	}
	if err := e.rt.Delete(ctx, name); err != nil {
		t.Fatalf("delete without the binary: %v", err)
	}
	if pidAlive(st.Pid) {
		t.Errorf("init %d still runs", st.Pid)
	}
	for _, p := range m.Paths() {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left (%v)", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dir, "runc", name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("runc state left: %v", err)
	}
	if _, err := executor.ReadState(e.rt.StateRoot(), name); !errors.Is(err, executor.ErrNotExist) {
		t.Errorf("state after delete: %v", err)
	}
}

func TestFailingBinary(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "fake-runtime")
	// A fake: a runtime whose create always fails, as a broken install would.
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'fake-runtime: cannot create' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, fake)
	name := testutil.Name(t, 40)
	err := e.rt.Create(context.Background(), name, filepath.Join(e.dir, "bundle"), ociruntime.CreateOptions{Spec: e.spec(t, name, "true")})
	if !errors.Is(err, ociruntime.ErrRuntimeFailed) {
		t.Fatalf("create with a failing binary: %v, want ErrRuntimeFailed", err)
	}
	if _, err := os.Stat(executor.StateDir(e.rt.StateRoot(), name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left: %v", err)
	}
}

// fakeSystemd is a fake of the systemd cgroup driver (no systemd as PID 1
// here): it only names itself and the scope's directory.
type fakeSystemd struct{}

func (fakeSystemd) Name() string { return "systemd" }
func (fakeSystemd) Manager(id, cgroupsPath string) (cgroups.Manager, error) {
	return fakeScope{id}, nil
}

type fakeScope struct{ id string }

func (fakeScope) Apply(context.Context, int, *specs.LinuxResources) error { return nil }
func (fakeScope) Set(context.Context, *specs.LinuxResources) error        { return nil }
func (fakeScope) Procs(context.Context) ([]int, error)                    { return nil, nil }
func (fakeScope) Stats(context.Context) (*cgroups.Stats, error)           { return &cgroups.Stats{}, nil }
func (fakeScope) Freeze(context.Context, bool) error                      { return nil }
func (fakeScope) Destroy(context.Context) error                           { return nil }
func (s fakeScope) Paths() map[string]string {
	return map[string]string{"": "/sys/fs/cgroup/reconciled.slice/reconciled-" + s.id + ".scope"}
}

// With the systemd driver the runtime is run with --systemd-cgroup and the
// container's cgroupsPath names the scope the driver looks for.
func TestSystemdDriverArgs(t *testing.T) {
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	fake := filepath.Join(dir, "fake-runtime")
	// A fake runtime: records its arguments and fails.
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\" > "+argsFile+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rt, err := ociruntime.New(ociruntime.Config{Name: "runc", Path: fake, StateRoot: filepath.Join(dir, "state"),
		RuntimeRoot: filepath.Join(dir, "runc"), Cgroups: fakeSystemd{}})
	if err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{Version: specs.Version, Root: &specs.Root{Path: dir}, Process: &specs.Process{Args: []string{"true"}, Cwd: "/"}, Linux: &specs.Linux{}}
	bundle := filepath.Join(dir, "bundle")
	if err := rt.Create(context.Background(), "web", bundle, ociruntime.CreateOptions{Spec: spec}); !errors.Is(err, ociruntime.ErrRuntimeFailed) {
		t.Fatalf("create with a failing fake: %v", err)
	}
	args, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(args), "--systemd-cgroup") || !strings.Contains(string(args), "create --bundle "+bundle) {
		t.Errorf("runtime arguments %q lack --systemd-cgroup or create --bundle", args)
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var written specs.Spec
	if err := json.Unmarshal(data, &written); err != nil {
		t.Fatal(err)
	}
	if written.Linux.CgroupsPath != "reconciled.slice:reconciled:web" || written.Version != ociruntime.OCIVersion {
		t.Errorf("config.json: cgroupsPath %q, ociVersion %q", written.Linux.CgroupsPath, written.Version)
	}
	if spec.Linux.CgroupsPath != "" {
		t.Errorf("the caller's spec was changed: %q", spec.Linux.CgroupsPath)
	}
}
