package waiter

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// start runs the waiter as a real process: fd 3 is a state directory
// holding exec.fifo, argv[0] the program it will exec.
func start(t *testing.T, argv ...string) (cmd *exec.Cmd, fifo string, out *bytes.Buffer) {
	t.Helper()
	if !Available() {
		t.Skip("no waiter on this architecture (the Go init waits instead)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "waiter")
	if err := os.WriteFile(bin, ELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo = filepath.Join(dir, "exec.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out = &bytes.Buffer{}
	cmd = &exec.Cmd{Path: bin, Args: argv, Env: []string{"GREETING=hello from the user program"}, Stdout: out, Stderr: out}
	cmd.ExtraFiles = []*os.File{d}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, fifo, out
}

// release opens the fifo as start does and returns what the waiter wrote
// before the fifo closed (nothing when the exec happened).
func release(t *testing.T, fifo string) string {
	t.Helper()
	f, err := os.OpenFile(fifo, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msg, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

func TestWaiterBlocksThenExecs(t *testing.T) {
	cmd, fifo, out := start(t, "/bin/sh", "sh", "-c", `echo "$GREETING"; if [ -e /proc/self/fd/3 ]; then echo fd3-leaked; else echo fd3-closed; fi`)
	// Until the fifo is opened for reading the waiter must not run the
	// program: nothing is printed and the process is still the waiter.
	time.Sleep(100 * time.Millisecond)
	if out.Len() != 0 {
		t.Fatalf("the program ran before start: %q", out.String())
	}
	exe, err := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe")
	if err != nil || !strings.HasSuffix(exe, "/waiter") {
		t.Fatalf("waiting process runs %q (%v), want the waiter", exe, err)
	}
	if msg := release(t, fifo); msg != "" {
		t.Fatalf("waiter reported %q, want nothing (exec happened)", msg)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("program: %v\n%s", err, out)
	}
	if got := out.String(); got != "hello from the user program\nfd3-closed\n" {
		t.Fatalf("program printed %q", got)
	}
}

func TestWaiterReportsExecFailure(t *testing.T) {
	cmd, fifo, _ := start(t, "/nonexistent/program", "program")
	msg := release(t, fifo)
	if msg != ExecFailedPrefix+"002" { // ENOENT
		t.Fatalf("waiter reported %q, want %q", msg, ExecFailedPrefix+"002")
	}
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 127 {
		t.Fatalf("waiter exit: %v, want status 127", err)
	}
}

func TestMemfdIsSealed(t *testing.T) {
	if !Available() {
		t.Skip("no waiter on this architecture")
	}
	fd, err := Memfd()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.Pwrite(fd, []byte{0}, 0); !errors.Is(err, unix.EPERM) {
		t.Fatalf("write to the sealed waiter: %v, want EPERM", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Size != int64(len(ELF())) {
		t.Fatalf("memfd size %d (%v), want %d", st.Size, err, len(ELF()))
	}
}
