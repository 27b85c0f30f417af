package waiter

import (
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// probeServer runs the probe server as a plain process with env, and
// returns the daemon's end of its socket and the read end of its output.
func probeServer(t *testing.T, env ...string) (*exec.Cmd, *os.File, *os.File) {
	t.Helper()
	if !ProbeServerAvailable() {
		t.Skip("no probe server on this architecture (exec probes start the exec stage there)")
	}
	bin := writeProgram(t, "probe", probeCode)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: bin, Args: []string{"reconciled-probe"}, Env: env, Stdin: theirs, Stdout: w, Stderr: w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	w.Close()
	t.Cleanup(func() {
		ours.Close()
		r.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, ours, r
}

// ask sends argv and returns the reply (a wait status, or -errno).
func ask(t *testing.T, sock *os.File, argv ...string) int32 {
	t.Helper()
	if _, err := sock.Write([]byte(strings.Join(argv, "\x00") + "\x00")); err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	sock.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := sock.Read(b[:])
	if err != nil || n != 4 {
		t.Fatalf("reply: %d bytes, %v", n, err)
	}
	return int32(binary.LittleEndian.Uint32(b[:4]))
}

// Commands by path and through PATH, their exit codes, signals and
// output; a command that cannot be run exits 127 and says so; an empty
// request is refused; EOF ends the server.
func TestProbeServer(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd, sock, out := probeServer(t, "PATH=/nonexistent::/usr/bin:/bin", "GREETING=hi")
	status := func(argv ...string) syscall.WaitStatus { return syscall.WaitStatus(ask(t, sock, argv...)) }
	if ws := status(sh, "-c", "echo $GREETING; exit 3"); !ws.Exited() || ws.ExitStatus() != 3 {
		t.Errorf("exit 3: status %#x", uint32(ws))
	}
	if ws := status("true"); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("true through PATH: status %#x", uint32(ws))
	}
	if ws := status("sh", "-c", "kill -TERM $$"); !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("killed by SIGTERM: status %#x", uint32(ws))
	}
	if ws := status("no-such-command-here"); !ws.Exited() || ws.ExitStatus() != 127 {
		t.Errorf("missing command: status %#x", uint32(ws))
	}
	if ws := status("/no/such/file"); !ws.Exited() || ws.ExitStatus() != 127 {
		t.Errorf("missing path: status %#x", uint32(ws))
	}
	if got := ask(t, sock, ""); got != -int32(unix.EINVAL) {
		t.Errorf("empty request: %d", got)
	}
	sock.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("server exit on EOF: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not exit on EOF")
	}
	out.SetReadDeadline(time.Now().Add(10 * time.Second))
	data, _ := io.ReadAll(out)
	got := string(data)
	want := "hi\nreconciled probe: cannot run no-such-command-here\nreconciled probe: cannot run /no/such/file\n"
	if got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

// Killing the server kills the command it runs (PR_SET_PDEATHSIG): a
// probe's timeout leaves nothing behind.
func TestProbeServerKillKillsCommand(t *testing.T) {
	cmd, sock, out := probeServer(t, "PATH=/usr/bin:/bin")
	if _, err := sock.Write([]byte("sh\x00-c\x00echo $$; exec sleep 1000\x00")); err != nil {
		t.Fatal(err)
	}
	out.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [32]byte
	n, err := out.Read(b[:])
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		t.Fatalf("pid %q: %v", b[:n], err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	cmd.Process.Kill()
	cmd.Wait()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		data, err := os.ReadFile("/proc/" + strings.TrimSpace(string(b[:n])) + "/stat")
		if err != nil || strings.Contains(string(data), ") Z ") {
			break // gone, or a zombie waiting for its reaper
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command %d outlived its server", pid)
		}
	}
}
