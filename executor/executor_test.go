package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/testutil"
)

func TestMain(m *testing.M) {
	MaybeRunStage()
	os.Exit(m.Run())
}

func TestValidateID(t *testing.T) {
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{"web", true}, {"a.b-c_D9", true}, {strings.Repeat("x", 128), true}, {"a.", true},
		{"", false}, {".x", false}, {"..", false}, {"a..b", false}, {"a/b", false}, {"a b", false},
		{strings.Repeat("x", 129), false}, {"é", false}, {"a\x00", false},
	} {
		err := ValidateID(tt.id)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidID)) {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestStateTransitionError(t *testing.T) {
	for _, tt := range []struct {
		op   string
		from Status
		want error
	}{
		{"delete", StatusRunning, ErrRunning},
		{"start", StatusRunning, ErrRunning},
		{"kill", StatusStopped, ErrNotRunning},
		{"start", StatusStopped, ErrNotRunning},
		{"kill", StatusCreating, ErrNotRunning},
	} {
		err := error(&StateTransitionError{ID: "x", Op: tt.op, From: tt.from})
		if !errors.Is(err, tt.want) {
			t.Errorf("%s from %s: %v is not %v", tt.op, tt.from, err, tt.want)
		}
	}
}

func TestCapMask(t *testing.T) {
	m, err := capMask([]string{"CAP_KILL", "cap_chown", "CAP_CHECKPOINT_RESTORE"}, 39)
	if err != nil || m != 1<<5|1<<0 {
		t.Errorf("capMask = %#x, %v", m, err)
	}
	if _, err := capMask([]string{"CAP_NOPE"}, 40); err == nil {
		t.Error("unknown capability accepted")
	}
}

// TestReadStateStatus: the status comes from the files and the live
// system, not from what state.json says.
func TestReadStateStatus(t *testing.T) {
	root := t.TempDir()
	self := os.Getpid()
	start, _, _ := proc.StartTime(self)
	write := func(id string, st State, fifo bool, exit *exitRecord) {
		dir := StateDir(root, id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		st.ID = id
		if err := writeJSONAtomic(dir, stateFile, st); err != nil {
			t.Fatal(err)
		}
		if fifo {
			if err := unix.Mkfifo(filepath.Join(dir, fifoFile), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if exit != nil {
			if err := writeJSONAtomic(dir, exitFile, exit); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("created", State{Status: StatusCreated, Pid: self, PidStartTime: start}, true, nil)
	write("running", State{Status: StatusCreated, Pid: self, PidStartTime: start}, false, nil)
	write("recycled", State{Status: StatusRunning, Pid: self, PidStartTime: start + 1}, false, nil)
	write("exited", State{Status: StatusRunning, Pid: self, PidStartTime: start}, false, &exitRecord{ExitCode: 137, ExitSignal: "SIGKILL", OOMKilled: true})
	if err := os.Mkdir(StateDir(root, "creating"), 0o700); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]Status{
		"created": StatusCreated, "running": StatusRunning, "recycled": StatusStopped,
		"exited": StatusStopped, "creating": StatusCreating,
	} {
		st, err := ReadState(root, id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if st.Status != want {
			t.Errorf("%s: status %s, want %s", id, st.Status, want)
		}
	}
	if st, _ := ReadState(root, "exited"); !st.Exited || st.ExitCode != 137 || !st.OOMKilled {
		t.Errorf("exited: %+v", st)
	}
	if _, err := ReadState(root, "nope"); !errors.Is(err, ErrNotExist) {
		t.Errorf("missing container: %v", err)
	}
	all, err := List(root)
	if err != nil || len(all) != 5 || all[0].ID != "created" {
		t.Errorf("List: %v, %d states", err, len(all))
	}
}

// TestInProcess drives the Runtime the way the daemon does: in process,
// with *os.File stdio, reaping its monitors.
func TestInProcess(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	r, err := New(filepath.Join(t.TempDir(), "state"), WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	spec := &specs.Spec{
		Version:  specs.Version,
		Process:  &specs.Process{Args: []string{"sh", "-c", "echo hi from $(hostname); exit 5"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:     &specs.Root{Path: rootfs},
		Mounts:   []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Hostname: "inproc",
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace},
		}},
	}
	id := "inproc"
	t.Cleanup(func() { r.Delete(ctx, id, true) })
	if err := r.Create(ctx, id, filepath.Dir(rootfs), CreateOptions{Spec: spec, Stdout: out, Stderr: out}); err != nil {
		t.Fatal(err)
	}
	if err := r.Create(ctx, id, filepath.Dir(rootfs), CreateOptions{Spec: spec}); !errors.Is(err, ErrExist) {
		t.Errorf("second create: %v", err)
	}
	if err := r.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := r.Wait(wctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusStopped || !st.Exited || st.ExitCode != 5 {
		t.Errorf("after exit: %+v", st)
	}
	if err := r.Kill(ctx, id, unix.SIGTERM); !errors.Is(err, ErrNotRunning) {
		t.Errorf("kill of a stopped container: %v", err)
	}
	if data, _ := os.ReadFile(out.Name()); string(data) != "hi from inproc\n" {
		t.Errorf("output %q", data)
	}
	if err := r.Delete(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.State(ctx, id); !errors.Is(err, ErrNotExist) {
		t.Errorf("state after delete: %v", err)
	}
	if err := r.Start(ctx, id); !errors.Is(err, ErrNotExist) {
		t.Errorf("start after delete: %v", err)
	}
}

func TestContextCancelDuringStart(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	r, err := New(filepath.Join(t.TempDir(), "state"), WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:    &specs.Root{Path: rootfs},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
	}
	t.Cleanup(func() { r.Delete(ctx, "c", true) })
	if err := r.Create(ctx, "c", filepath.Dir(rootfs), CreateOptions{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	// A start whose init never opens the fifo (stopped with SIGSTOP) must
	// return when its context ends.
	st, _ := r.State(ctx, "c")
	unix.Kill(st.Pid, unix.SIGSTOP)
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := r.Start(cctx, "c"); !errors.Is(err, context.DeadlineExceeded) {
		// The init may have been past the open already; then start succeeds.
		if err != nil {
			t.Errorf("start with an expiring context: %v", err)
		}
	}
	unix.Kill(st.Pid, unix.SIGCONT)
}

// Where there is no reaper (other architectures, a cgroup driver without a
// memory directory, a failed exec) the Go monitor waits for the init and
// writes exit.json: the same exit code, signal and state as the reaper's.
func TestGoMonitorFallback(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	root := filepath.Join(t.TempDir(), "state")
	r, err := New(root, WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	r.goMonitor = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		id     string
		args   []string
		code   int
		signal string
	}{
		{"gomon-exit", []string{"sh", "-c", "exit 5"}, 5, ""},
		{"gomon-kill", []string{"sleep", "1000"}, 137, "SIGKILL"}, // killed from outside
	} {
		spec := &specs.Spec{
			Version: specs.Version,
			Process: &specs.Process{Args: tc.args, Cwd: "/", Env: []string{"PATH=/bin"}},
			Root:    &specs.Root{Path: rootfs},
			Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
		}
		t.Cleanup(func() { r.Delete(context.Background(), tc.id, true) })
		if err := r.Create(ctx, tc.id, filepath.Dir(rootfs), CreateOptions{Spec: spec}); err != nil {
			t.Fatal(err)
		}
		created, _ := r.State(ctx, tc.id)
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", created.MonitorPid)); strings.Contains(exe, "reaper") {
			t.Errorf("%s: the monitor became the reaper (%s)", tc.id, exe)
		}
		if err := r.Start(ctx, tc.id); err != nil {
			t.Fatal(err)
		}
		if tc.signal != "" {
			if err := r.Kill(ctx, tc.id, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		st, err := r.Wait(ctx, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Exited || st.ExitCode != tc.code || st.ExitSignal != tc.signal || st.Finished.IsZero() {
			t.Errorf("%s: exited %v code %d signal %q finished %v; want code %d signal %q", tc.id, st.Exited, st.ExitCode, st.ExitSignal, st.Finished, tc.code, tc.signal)
		}
		if _, err := os.Stat(filepath.Join(StateDir(root, tc.id), exitFile)); err != nil {
			t.Errorf("%s: no exit.json from the Go monitor: %v", tc.id, err)
		}
	}
}

// When the monitor cannot become the reaper it leaves the reason in the
// state directory (its stderr is /dev/null), and Delete logs it with the
// key "err".
func TestDeleteLogsMonitorError(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	var logs bytes.Buffer
	root := filepath.Join(t.TempDir(), "state")
	r, err := New(root, WithReaper(), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := "monerr-" + strconv.Itoa(os.Getpid())
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:    &specs.Root{Path: rootfs},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
	}
	t.Cleanup(func() { r.Delete(context.Background(), id, true) })
	if err := r.Create(ctx, id, filepath.Dir(rootfs), CreateOptions{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	msg := "the monitor could not become the reaper and waits in Go: no memory cgroup directory in the state\n"
	if err := os.WriteFile(filepath.Join(StateDir(root, id), monitorErrFile), []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `err="the monitor could not become the reaper and waits in Go: no memory cgroup directory in the state"`) ||
		!strings.Contains(logs.String(), "container="+id) {
		t.Errorf("log:\n%s", logs.String())
	}
}

// A failing poststart or poststop hook is a warning: the hooks after it
// still run and the lifecycle goes on (runtime-spec, config.md "Hooks";
// runtime-tools' poststart_fail and poststop_fail).
func TestPoststartPoststopGoOnPastAFailingHook(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	var logs bytes.Buffer
	r, err := New(filepath.Join(t.TempDir(), "state"), WithReaper(), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := filepath.Join(t.TempDir(), "hooklog")
	hooks := func(kind string) []specs.Hook {
		return []specs.Hook{
			{Path: "/bin/sh", Args: []string{"sh", "-c", "echo " + kind + "-first-fails >&2; exit 3"}},
			{Path: "/bin/sh", Args: []string{"sh", "-c", "echo " + kind + " >> " + out}},
		}
	}
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"true"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:    &specs.Root{Path: rootfs},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
		Hooks:   &specs.Hooks{Poststart: hooks("poststart"), Poststop: hooks("poststop")},
	}
	id := "hookfail-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() { r.Delete(context.Background(), id, true) })
	if err := r.Create(ctx, id, filepath.Dir(rootfs), CreateOptions{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, id); err != nil {
		t.Fatalf("start with a failing poststart hook: %v", err)
	}
	if _, err := r.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(ctx, id, false); err != nil {
		t.Fatalf("delete with a failing poststop hook: %v", err)
	}
	if got, _ := os.ReadFile(out); string(got) != "poststart\npoststop\n" {
		t.Errorf("hooks after the failing one wrote %q, want %q", got, "poststart\npoststop\n")
	}
	for _, want := range []string{"poststart-first-fails", "poststop-first-fails"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the failure %q was not logged:\n%s", want, logs.String())
		}
	}
}

// A hostname needs a UTS namespace of the container's own: a new one, or
// one joined by path that is not the host's (as runc allows; runtime-tools'
// linux_ns_path joins one with the default hostname). The init sets it in
// the joined namespace. Joining the host's own is refused.
func TestHostnameInAJoinedUTSNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "unshare")
	rootfs := testutil.BusyboxRootfs(t)
	holder := exec.Command("unshare", "--uts", "sleep", "1000")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	joined := fmt.Sprintf("/proc/%d/ns/uts", holder.Process.Pid)
	host, _ := os.Readlink("/proc/self/ns/uts")
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if l, _ := os.Readlink(joined); l != "" && l != host {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --uts did not get a namespace of its own")
		}
	}
	specWith := func(uts specs.LinuxNamespace) *specs.Spec {
		return &specs.Spec{
			Version:  specs.Version,
			Process:  &specs.Process{Args: []string{"hostname"}, Cwd: "/", Env: []string{"PATH=/bin"}},
			Root:     &specs.Root{Path: rootfs},
			Hostname: "joined-uts",
			Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, uts,
			}},
		}
	}
	for _, tt := range []struct {
		path string
		ok   bool
	}{
		{"", true},
		{joined, true},
		{"/proc/self/ns/uts", false},
	} {
		_, err := validateSpec(specWith(specs.LinuxNamespace{Type: specs.UTSNamespace, Path: tt.path}))
		if (err == nil) != tt.ok {
			t.Errorf("hostname with uts namespace %q: %v, want ok=%v", tt.path, err, tt.ok)
		}
	}
	if _, err := validateSpec(specWith(specs.LinuxNamespace{Type: specs.IPCNamespace})); err == nil {
		t.Error("hostname without a uts namespace accepted")
	}

	r, err := New(filepath.Join(t.TempDir(), "state"), WithReaper())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	id := "joinuts-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() { r.Delete(context.Background(), id, true) })
	spec := specWith(specs.LinuxNamespace{Type: specs.UTSNamespace, Path: joined})
	if err := r.Create(ctx, id, filepath.Dir(rootfs), CreateOptions{Spec: spec, Stdout: out, Stderr: out}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(out.Name()); string(data) != "joined-uts\n" {
		t.Errorf("hostname in the container: %q", data)
	}
	var self unix.Utsname
	if err := unix.Uname(&self); err != nil {
		t.Fatal(err)
	}
	if unix.ByteSliceToString(self.Nodename[:]) == "joined-uts" {
		t.Error("the host's hostname changed")
	}
}
