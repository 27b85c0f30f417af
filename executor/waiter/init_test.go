package waiter

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// initCmd runs the init as a plain process (not PID 1: it is a child
// subreaper then) with program and its argv.
func initCmd(t *testing.T, program string, argv ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	if !InitAvailable() {
		t.Skip("no init on this architecture (init: true is refused there)")
	}
	bin := writeProgram(t, "init", initCode)
	out := &lockedBuffer{}
	cmd := &exec.Cmd{Path: bin, Args: append([]string{program}, argv...), Env: []string{"PATH=/usr/bin:/bin"}, Stdout: out, Stderr: out}
	return cmd, out
}

// lockedBuffer is the output of a process read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return ee.ExitCode()
}

// The init exits as its child did: the code, or 128+N for signal N; the
// child starts with the signal mask the init was given (none blocked).
func TestInitExitStatus(t *testing.T) {
	for _, c := range []struct {
		script string
		want   int
	}{{"exit 5", 5}, {"kill -USR1 $$", 128 + 10}, {"grep -q 'SigBlk:.*0000000000000000' /proc/self/status", 0}} {
		cmd, out := initCmd(t, "/bin/sh", "sh", "-c", c.script)
		if got := exitCode(t, cmd.Run()); got != c.want {
			t.Errorf("%q: exit %d, want %d\n%s", c.script, got, c.want, out)
		}
	}
	cmd, out := initCmd(t, "/nonexistent", "x")
	if got := exitCode(t, cmd.Run()); got != 127 || out.String() != "reconciled init: execve failed: errno 002\n" {
		t.Errorf("exec of a missing program: exit %d, %q", got, out)
	}
}

// Signals sent to the init reach the child; orphans are reaped. (USR1,
// not HUP: a shell cannot trap a signal ignored when it started, and
// nohup, or a CI runner, may start the tests with SIGHUP ignored.)
func TestInitForwardsAndReaps(t *testing.T) {
	cmd, out := initCmd(t, "/bin/sh", "sh", "-c", "trap 'echo got USR1' USR1; (sleep 0.1 &); (sleep 0.1 &); echo ready; while :; do sleep 0.05; done")
	// A process group of its own: the cleanup kills the shell and its
	// sleeps too, which hold the output pipe that Wait waits for.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "ready"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no ready: %q", out)
		}
	}
	time.Sleep(500 * time.Millisecond)
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		data, err := os.ReadFile("/proc/" + p.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(pid) {
			t.Errorf("zombie %s under the init", p.Name())
		}
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "got USR1"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("SIGUSR1 not forwarded: %q", out)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if got := exitCode(t, err); got != 128+15 {
			t.Errorf("after SIGTERM: exit %d, want 143", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM not forwarded")
	}
}
