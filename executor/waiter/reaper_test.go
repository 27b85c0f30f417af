package waiter

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// writeProgram writes code as an executable ELF file named name in a
// temporary directory and returns its path.
func writeProgram(t *testing.T, name string, code []byte) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(bin, elf(code), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// reap runs the reaper as a real process the way the monitor does: a shell
// starts child (the container's init in the monitor) in the background and
// execs the reaper, which inherits it as its only child; fd 3 is the state
// directory, fd 4 the OOM counter file when oom is not "". It returns what
// the reaper recorded.
func reap(t *testing.T, child, oom string) Exit {
	t.Helper()
	if !ReaperAvailable() {
		t.Skip("no reaper on this architecture (the Go monitor waits instead)")
	}
	dir := t.TempDir()
	bin := writeProgram(t, "reaper", reaperCode)
	d, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cmd := exec.Command("/bin/sh", "-c", child+" & exec \"$REAPER\"")
	cmd.Env = []string{"REAPER=" + bin, "PATH=/usr/bin:/bin"}
	cmd.ExtraFiles = []*os.File{d}
	if oom != "" {
		f := filepath.Join(t.TempDir(), "memory.events")
		if err := os.WriteFile(f, []byte(oom), 0o644); err != nil {
			t.Fatal(err)
		}
		o, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, o)
	}
	before := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reaper: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, ExitFile))
	if err != nil {
		t.Fatalf("no exit record: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "exit.tmp")); !os.IsNotExist(err) {
		t.Errorf("exit.tmp left beside the record: %v", err)
	}
	e, err := ParseExit(data)
	if err != nil {
		t.Fatalf("%v:\n%s", err, data)
	}
	if at := time.Unix(e.Sec, e.Nsec); at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("finish time %v, not between %v and now", at, before)
	}
	return e
}

func TestReaperExitCode(t *testing.T) {
	e := reap(t, "sh -c 'exit 3'", "low 0\noom 1\noom_kill 2\n")
	if !e.HasStatus || e.Status.Signaled() || e.Status.ExitStatus() != 3 {
		t.Errorf("status %v (has %v), want exit 3", e.Status, e.HasStatus)
	}
	if e.OOMFile != "low 0\noom 1\noom_kill 2\n" {
		t.Errorf("OOM counter file recorded as %q", e.OOMFile)
	}
}

func TestReaperSignal(t *testing.T) {
	e := reap(t, "sh -c 'kill -KILL $$'", "")
	if !e.HasStatus || !e.Status.Signaled() || e.Status.Signal() != unix.SIGKILL {
		t.Errorf("status %v, want killed by SIGKILL", e.Status)
	}
	if e.OOMFile != "" {
		t.Errorf("OOM counter %q recorded with no counter file", e.OOMFile)
	}
}

func TestParseExitRejects(t *testing.T) {
	for _, bad := range []string{
		"", "{\"exitCode\":0}", "reconciled-exit 1\n", "reconciled-exit 1\nstatus x\ntime 1 2\n",
		"reconciled-exit 1\nstatus 0\n", "reconciled-exit 1\nstatus 0\ntime 1\n", "reconciled-exit 2\ntime 1 2\n",
	} {
		if _, err := ParseExit([]byte(bad)); err == nil {
			t.Errorf("ParseExit(%q) accepted it", bad)
		}
	}
	e, err := ParseExit([]byte("reconciled-exit 1\ntime 5 6\n"))
	if err != nil || e.HasStatus || e.Sec != 5 || e.Nsec != 6 {
		t.Errorf("a record without status (wait4 failed): %+v, %v", e, err)
	}
}
