package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	"reconciled.dev/reconciled/internal/testutil"
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
	bin = filepath.Join(dir, "reconciled")
	build := exec.Command("go", "build", "-o", bin, "reconciled.dev/reconciled/cmd/reconciled")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as shipped
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The JSON contract of `reconciled status -o json`, spelled out here so
// that a renamed key fails the tests.
type report struct {
	Containers []container `json:"containers"`
	Files      []file      `json:"files"`
	Revision   string      `json:"revision"`
}

type container struct {
	Name      string  `json:"name"`
	Phase     string  `json:"phase"`
	Pid       int     `json:"pid"`
	Restarts  int     `json:"restarts"`
	ExitCode  *int    `json:"exitCode"`
	OOMKilled bool    `json:"oomKilled"`
	Source    string  `json:"source"`
	Runtime   string  `json:"runtime"`
	SpecHash  string  `json:"specHash"`
	Message   string  `json:"message"`
	Events    []event `json:"events"`
}

type event struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	Reason string    `json:"reason"`
}

type file struct {
	Path        string `json:"path"`
	Valid       bool   `json:"valid"`
	ContentHash string `json:"contentHash"`
	Errors      []struct {
		Message string `json:"message"`
	} `json:"errors"`
}

func (r *report) get(name string) *container {
	for i := range r.Containers {
		if r.Containers[i].Name == name {
			return &r.Containers[i]
		}
	}
	return nil
}

// env is one daemon with its directories.
type env struct {
	t         *testing.T
	prefix    string // every container name starts with it
	dir       string
	manifests string
	state     string
	logDir    string
	daemon    *exec.Cmd
	exited    chan struct{}
	stderr    string
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
	args := append([]string{"run", "--manifests", e.manifests, "--state", e.state, "--log-dir", e.logDir}, extra...)
	cmd := exec.Command(bin, args...)
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

// cleanup stops the daemon, deletes every container it left with the
// binary, and checks that no process, mount or cgroup of the test is left.
func (e *env) cleanup() {
	t := e.t
	e.stop(syscall.SIGTERM)
	if t.Failed() {
		if data, err := os.ReadFile(e.stderr); err == nil {
			t.Logf("daemon log:\n%s", tailLines(string(data), 60))
		}
	}
	root := filepath.Join(e.state, "runtime")
	entries, _ := os.ReadDir(root)
	for _, ent := range entries {
		out, err := exec.Command(bin, "runtime", "--root", root, "delete", "--force", ent.Name()).CombinedOutput()
		if err != nil {
			t.Errorf("delete --force %s: %v\n%s", ent.Name(), err, out)
		}
	}
	for _, left := range e.leftovers() {
		t.Errorf("left behind: %s", left)
	}
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
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/reconciled/" + e.prefix + "*")
	cgs2, _ := filepath.Glob("/sys/fs/cgroup/reconciled/" + e.prefix + "*")
	for _, c := range append(cgs, cgs2...) {
		out = append(out, "cgroup "+c)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, e.dir) || strings.Contains(l, e.prefix) {
			out = append(out, "mount "+l)
		}
	}
	return out
}

// status runs `reconciled status -o json`.
func (e *env) status() (*report, error) {
	out, err := exec.Command(bin, "status", "--state", e.state, "-o", "json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%v: %s", err, ee.Stderr)
		}
		return nil, err
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("%v\n%s", err, out)
	}
	return &r, nil
}

// statusOf runs `reconciled status NAME -o json`.
func (e *env) statusOf(name string) *container {
	e.t.Helper()
	out, err := exec.Command(bin, "status", "--state", e.state, name, "-o", "json").Output()
	if err != nil {
		e.t.Fatalf("status %s: %v", name, err)
	}
	var c container
	if err := json.Unmarshal(out, &c); err != nil {
		e.t.Fatalf("status %s: %v\n%s", name, err, out)
	}
	return &c
}

// waitFor polls status until cond holds, failing the test after timeout.
func (e *env) waitFor(what string, timeout time.Duration, cond func(*report) bool) *report {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var last *report
	var lastErr error
	for {
		r, err := e.status()
		if err == nil {
			last = r
			if cond(r) {
				return r
			}
		}
		lastErr = err
		if time.Now().After(deadline) {
			data, _ := json.MarshalIndent(last, "", "  ")
			e.t.Fatalf("timed out after %s waiting for %s (last error: %v)\nlast status:\n%s", timeout, what, lastErr, data)
		}
		select {
		case <-e.exited:
			if e.daemon != nil {
				data, _ := os.ReadFile(e.stderr)
				e.t.Fatalf("daemon exited while waiting for %s:\n%s", what, tailLines(string(data), 40))
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitRunning waits until container name runs and returns it.
func (e *env) waitRunning(name string, timeout time.Duration) *container {
	e.t.Helper()
	r := e.waitFor(name+" running", timeout, func(r *report) bool {
		c := r.get(name)
		return c != nil && c.Phase == "running" && c.Pid > 0 && c.Message == ""
	})
	return r.get(name)
}

// write puts a manifest into the directory as deployment tools do: a temp
// file renamed over the old one. It returns the content's sha256.
func (e *env) write(file, content string) string {
	e.t.Helper()
	tmp := filepath.Join(e.manifests, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.manifests, file)); err != nil {
		e.t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])
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
func manifest(name, command, extra string) string {
	return fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: %s
spec:
  root: {path: /, readonly: true}
  command: ["/bin/sh", "-c", %q]
  user: "65534:65534"
  stop: {signal: SIGKILL, timeout: 1s}
%s`, name, command, extra)
}

// alive says whether pid runs (not a zombie).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i > 0 && len(data) > i+2 && data[i+2] != 'Z' && data[i+2] != 'X'
}

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

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
