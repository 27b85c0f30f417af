//go:build amd64

package waiter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil"
)

// runner is a setup runner started as a real process, with the test
// holding the other end of its socket.
type runner struct {
	cmd  *exec.Cmd
	sock int
	out  *bytes.Buffer
}

func startRunner(t *testing.T) *runner {
	t.Helper()
	if !SetupAvailable() {
		t.Skip("no setup runner on this architecture")
	}
	bin := filepath.Join(t.TempDir(), "setup")
	if err := os.WriteFile(bin, SetupELF(), 0o755); err != nil {
		t.Fatal(err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := os.NewFile(uintptr(fds[1]), "setup socket")
	defer child.Close()
	r := &runner{sock: fds[0], out: &bytes.Buffer{}}
	r.cmd = &exec.Cmd{Path: bin, Args: []string{"reconciled-setup"}, Stdout: r.out, Stderr: r.out, ExtraFiles: []*os.File{child}}
	if err := r.cmd.Start(); err != nil {
		unix.Close(fds[0])
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		unix.Close(r.sock)
	})
	return r
}

// outputPipe is a pipe for the runner's program to write to: the test
// reads pr (closed at cleanup) and hands pw to the runner, then closes it.
func outputPipe(t *testing.T) (pr, pw *os.File) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	return pr, pw
}

func (r *runner) send(t *testing.T, p *Program, fds ...int) {
	t.Helper()
	if err := p.Send(r.sock, fds...); err != nil {
		t.Fatal(err)
	}
}

// read returns what the runner wrote on its socket until n bytes came or
// the socket closed.
func (r *runner) read(t *testing.T, n int) string {
	t.Helper()
	var got []byte
	buf := make([]byte, 512)
	for len(got) < n {
		m, err := unix.Read(r.sock, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("read the runner's socket: %v", err)
		}
		if m == 0 {
			break
		}
		got = append(got, buf[:m]...)
	}
	return string(got)
}

func (r *runner) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(10 * time.Second):
		t.Fatalf("the runner did not exit; output %q", r.out)
		return -1
	}
}

// TestSetupRunsACredentialsProgram runs what a container's init does on
// itself before it waits: the working directory (made if missing, opened,
// fchdir), no_new_privs, groups, gid and uid, "ready" to the creator,
// every fd above 2 close-on-exec, the exec fifo, then the program. The
// exec'd shell shows each effect.
func TestSetupRunsACredentialsProgram(t *testing.T) {
	testutil.RequireRoot(t)
	r := startRunner(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cwd := filepath.Join(dir, "work")
	fifo := filepath.Join(dir, "exec.fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(fifo, 4321, 1234); err != nil {
		t.Fatal(err)
	}
	state, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	pr, pw := outputPipe(t)

	var p Program
	p.Call("make the working directory", unix.SYS_MKDIRAT, Int(unix.AT_FDCWD), p.String(cwd), Imm(0o755)).Allow(unix.EEXIST)
	p.Call("make it again", unix.SYS_MKDIRAT, Int(unix.AT_FDCWD), p.String(cwd), Imm(0o755)).Allow(unix.EEXIST)
	p.Call("open the working directory", unix.SYS_OPENAT, Int(unix.AT_FDCWD), p.String(cwd), Imm(unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)).Into(FirstSlot)
	p.Call("fchdir", unix.SYS_FCHDIR, Slot(FirstSlot))
	p.Call("close", unix.SYS_CLOSE, Slot(FirstSlot))
	p.Call("stdout", unix.SYS_DUP3, Slot(FdSlot(0)), Imm(1), Imm(0))
	p.Call("stderr", unix.SYS_DUP3, Slot(FdSlot(0)), Imm(2), Imm(0))
	p.Call("no_new_privs", unix.SYS_PRCTL, Imm(unix.PR_SET_NO_NEW_PRIVS), Imm(1), Imm(0), Imm(0), Imm(0))
	groups := make([]byte, 8)
	binary.LittleEndian.PutUint32(groups, 2001)
	binary.LittleEndian.PutUint32(groups[4:], 2002)
	p.Call("setgroups", unix.SYS_SETGROUPS, Imm(2), p.Bytes(groups))
	p.Call("setresgid", unix.SYS_SETRESGID, Imm(1234), Imm(1234), Imm(1234))
	p.Call("setresuid", unix.SYS_SETRESUID, Imm(4321), Imm(4321), Imm(4321))
	p.Call("say ready", unix.SYS_WRITE, Imm(3), p.String("ready"), Imm(5)).Expect(5)
	p.Call("close_range", unix.SYS_CLOSE_RANGE, Imm(3), Imm(^uint64(0)>>32), Imm(unix.CLOSE_RANGE_CLOEXEC))
	p.Call("open the exec fifo", unix.SYS_OPENAT, Slot(FdSlot(1)), p.String("exec.fifo"), Imm(unix.O_WRONLY|unix.O_CLOEXEC)).Into(ErrorSlot)
	p.Call("exec sh", unix.SYS_EXECVE, p.String("/bin/sh"),
		p.Strings([]string{"sh", "-c", `pwd; id -u; id -g; id -G; grep NoNewPrivs /proc/self/status; echo "$GREETING"; for fd in 3 4 5 6 7; do [ -e /proc/self/fd/$fd ] && readlink /proc/self/fd/$fd; done; true`}),
		p.Strings([]string{"GREETING=hello from the exec'd program"})).Exit(127)
	r.send(t, &p, int(pw.Fd()), int(state.Fd()))
	pw.Close()

	if got := r.read(t, 5); got != "ready" {
		t.Fatalf("runner said %q, want ready", got)
	}
	// Until start opens the fifo nothing runs.
	time.Sleep(50 * time.Millisecond)
	f, err := os.OpenFile(fifo, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := io.ReadAll(f)
	f.Close()
	if err != nil || len(msg) != 0 {
		t.Fatalf("fifo: %q, %v; want EOF (the exec happened)", msg, err)
	}
	if got := r.read(t, 1<<20); got != "" {
		t.Fatalf("socket after ready: %q, want EOF (close-on-exec)", got)
	}
	out, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	want := cwd + "\n4321\n1234\n1234 2001 2002\nNoNewPrivs:\t1\nhello from the exec'd program\n"
	if string(out) != want {
		t.Fatalf("program printed\n%q\nwant\n%q", out, want)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit status %d", code)
	}
}

// TestSetupReportsTheFailedCall: a failing call writes what it did and
// its errno to the error fd and ends the runner with its status; nothing
// after it runs.
func TestSetupReportsTheFailedCall(t *testing.T) {
	r := startRunner(t)
	marker := filepath.Join(t.TempDir(), "after")
	var p Program
	p.Call("open the working directory /nonexistent", unix.SYS_OPENAT, Int(unix.AT_FDCWD), p.String("/nonexistent/"+t.Name()), Imm(unix.O_RDONLY)).Exit(3)
	p.Call("make a file", unix.SYS_OPENAT, Int(unix.AT_FDCWD), p.String(marker), Imm(unix.O_CREAT|unix.O_WRONLY), Imm(0o600))
	r.send(t, &p)
	got := r.read(t, 1<<20)
	serr, err := ParseSetupError([]byte(got))
	if err != nil {
		t.Fatalf("report %q: %v", got, err)
	}
	if !errors.Is(serr, unix.ENOENT) || serr.What != "open the working directory /nonexistent" {
		t.Fatalf("report %q parsed as %v, want the open's ENOENT", got, serr)
	}
	if serr.Error() != "open the working directory /nonexistent: no such file or directory" {
		t.Fatalf("error reads %q", serr.Error())
	}
	if code := r.wait(t); code != 3 {
		t.Fatalf("exit status %d, want 3", code)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the call after the failed one ran: %v", err)
	}
}

// TestSetupChunksShareSlots: a chunk runs, says so, and the next chunk,
// sent after that, uses a result the first stored; a read that must
// return one byte fails when the creator hangs up instead.
func TestSetupChunksShareSlots(t *testing.T) {
	r := startRunner(t)
	dir := t.TempDir()
	pr, pw := outputPipe(t)

	var p1 Program
	p1.Call("open the directory", unix.SYS_OPENAT, Int(unix.AT_FDCWD), p1.String(dir), Imm(unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)).Into(40)
	p1.Call("say one", unix.SYS_WRITE, Imm(3), p1.String("1"), Imm(1)).Expect(1)
	r.send(t, &p1)
	if got := r.read(t, 1); got != "1" {
		t.Fatalf("after chunk 1: %q", got)
	}
	var p2 Program
	p2.Call("make a file in it", unix.SYS_OPENAT, Slot(40), p2.String("made-by-chunk-2"), Imm(unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC), Imm(0o600)).Into(41)
	p2.Call("write to the pipe", unix.SYS_WRITE, Slot(FdSlot(0)), p2.String("two"), Imm(3)).Expect(3)
	p2.Call("say two", unix.SYS_WRITE, Imm(3), p2.String("2"), Imm(1)).Expect(1)
	buf := p2.Zero(8)
	p2.Call("wait to be placed", unix.SYS_READ, Imm(3), buf, Imm(1)).Expect(1)
	r.send(t, &p2, int(pw.Fd()))
	pw.Close()
	if got := r.read(t, 1); got != "2" {
		t.Fatalf("after chunk 2: %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "made-by-chunk-2")); err != nil {
		t.Fatalf("chunk 2 did not use chunk 1's directory: %v", err)
	}
	if err := unix.Shutdown(r.sock, unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	got := r.read(t, 1<<20)
	if got != "wait to be placed: errno 000" {
		t.Fatalf("runner reported %q", got)
	}
	if serr, err := ParseSetupError([]byte(got)); err != nil || serr.Error() != "wait to be placed: unexpected result" {
		t.Fatalf("parsed %v, %v", serr, err)
	}
	if code := r.wait(t); code != 1 {
		t.Fatalf("exit status %d, want 1", code)
	}
	out, _ := io.ReadAll(pr)
	if string(out) != "two" {
		t.Fatalf("pipe got %q", out)
	}
}

// TestSetupInstallsASeccompFilter: a sock_fprog in the chunk points at
// its filter (a relocated pointer); the filter denies mkdir and mkdirat
// with EPERM, and the exec'd shell's mkdir fails so.
func TestSetupInstallsASeccompFilter(t *testing.T) {
	r := startRunner(t)
	dir := t.TempDir()
	pr, pw := outputPipe(t)
	insn := func(code uint16, jt, jf uint8, k uint32) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint16(b, code)
		b[2], b[3] = jt, jf
		binary.LittleEndian.PutUint32(b[4:], k)
		return b
	}
	var filter []byte
	filter = append(filter, insn(0x20, 0, 0, 0)...)                             // ld [0]: the syscall number
	filter = append(filter, insn(0x15, 2, 0, unix.SYS_MKDIR)...)                // jeq mkdir: deny
	filter = append(filter, insn(0x15, 1, 0, unix.SYS_MKDIRAT)...)              // jeq mkdirat: deny
	filter = append(filter, insn(0x06, 0, 0, 0x7fff0000)...)                    // ret ALLOW
	filter = append(filter, insn(0x06, 0, 0, 0x00050000|uint32(unix.EPERM))...) // ret ERRNO(EPERM)

	var p Program
	fprog := p.Zero(16)
	binary.LittleEndian.PutUint16(p.data[fprog.v:], 5)
	p.SetPointer(fprog, 8, p.Bytes(filter))
	p.Call("stdout", unix.SYS_DUP3, Slot(FdSlot(0)), Imm(1), Imm(0))
	p.Call("stderr", unix.SYS_DUP3, Slot(FdSlot(0)), Imm(2), Imm(0))
	p.Call("no_new_privs", unix.SYS_PRCTL, Imm(unix.PR_SET_NO_NEW_PRIVS), Imm(1), Imm(0), Imm(0), Imm(0))
	p.Call("install the seccomp filter", unix.SYS_SECCOMP, Imm(unix.SECCOMP_SET_MODE_FILTER), Imm(0), fprog)
	p.Call("exec sh", unix.SYS_EXECVE, p.String("/bin/sh"),
		p.Strings([]string{"sh", "-c", `mkdir "$1/denied" 2>/dev/null && echo made || echo refused; touch "$1/allowed" && echo touched`, "sh", dir}),
		p.Strings(nil)).Exit(127)
	r.send(t, &p, int(pw.Fd()))
	pw.Close()
	out, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "refused\ntouched\n" {
		t.Fatalf("program printed %q, want mkdir refused and touch done", out)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("exit status %d: %s", code, r.out)
	}
	if _, err := os.Stat(filepath.Join(dir, "denied")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mkdir happened under the filter: %v", err)
	}
}

// TestSetupEncode: the chunk's layout as the runner reads it.
func TestSetupEncode(t *testing.T) {
	var p Program
	argv := p.Strings([]string{"a"})
	p.Call("x", unix.SYS_WRITE, Slot(5), argv, SlotAddr(7)).Into(20).Allow(unix.EEXIST).Expect(9).Exit(4)
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if string(b[:8]) != "RCLDPRG1" || le.Uint64(b[8:]) != uint64(len(b)-16) {
		t.Fatalf("header % x", b[:16])
	}
	c := b[16:]
	if le.Uint64(c) != 1 || le.Uint64(c[8:]) != 1 {
		t.Fatalf("nops %d nrelocs %d", le.Uint64(c), le.Uint64(c[8:]))
	}
	w0 := le.Uint64(c[16:])
	flags := uint32(w0 >> 32)
	if uint32(w0) != unix.SYS_WRITE || flags&0xfff != 2|1<<2|3<<4 || flags>>12&63 != 21 || flags&(1<<18) == 0 || flags>>20&255 != uint32(unix.EEXIST) {
		t.Fatalf("w0 %#x", w0)
	}
	dataAt := 16 + 9*8 + 8
	if le.Uint64(c[16+16:]) != uint64(dataAt) {
		t.Fatalf("argv at %d, want %d (the data's start)", le.Uint64(c[16+16:]), dataAt)
	}
	reloc := le.Uint64(c[16+72:])
	if reloc != uint64(dataAt) || le.Uint64(c[reloc:]) != uint64(dataAt+16) || string(c[dataAt+16:dataAt+18]) != "a\x00" {
		t.Fatalf("argv[0] relocation at %d -> %d", reloc, le.Uint64(c[reloc:]))
	}
	w7 := le.Uint64(c[16+56:])
	if msg := c[uint32(w7) : uint32(w7)+uint32(w7>>32&0xffff)]; string(msg) != "x" || w7>>48 != 4 {
		t.Fatalf("w7 %#x", w7)
	}
	if !strings.HasPrefix(string(b[16:]), "\x01\x00") {
		t.Fatal("little-endian nops")
	}
}
