package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/proc"
)

// An exec probe's command is run by the run's probe server
// (executor.ExecOptions.ProbeServer, executor/waiter/probe_amd64.S): a
// machine-code process started once per probed run through the exec stage,
// which forks the command on request. A probe then starts one small
// process instead of reconciled's exec stage and the command. Where the
// server cannot run (another architecture, a seccomp profile that forbids
// execveat or fork, a server that died), probes start the exec stage as
// `reconciled exec` does, and the server is tried again after
// probeServerRetry.

// probeServerRetry is how long a run's probes go without a server after it
// failed to start or died.
const probeServerRetry = time.Minute

// probeServerMax bounds a request (probe_amd64.S: 4095 bytes, 64 strings).
const (
	probeServerMaxBytes = 4095
	probeServerMaxArgs  = 64
)

// probeServer is a run's probe server and the daemon's ends of its fds.
type probeServer struct {
	proc *executor.ExecProcess
	sock *os.File // SOCK_SEQPACKET: requests and replies
	out  *os.File // the read end of its children's stdout and stderr
}

// startProbeServer starts a probe server in container name.
func startProbeServer(ctx context.Context, rt execer, name string) (*probeServer, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, os.NewSyscallError("fcntl", err)
	}
	sock, theirs := os.NewFile(uintptr(fds[0]), "probe-server"), os.NewFile(uintptr(fds[1]), "probe-server")
	defer theirs.Close()
	r, w, err := os.Pipe()
	if err != nil {
		sock.Close()
		return nil, err
	}
	defer w.Close()
	proc, err := rt.Exec(ctx, name, executor.ExecOptions{ProbeServer: true, Stdin: theirs, Stdout: w, Stderr: w})
	if err != nil {
		sock.Close()
		r.Close()
		return nil, err
	}
	return &probeServer{proc: proc, sock: sock, out: r}, nil
}

// close ends the server: EOF on its socket ends it; one that does not end
// at once (its command runs on) is killed, and with it the command.
func (s *probeServer) close(kill bool) {
	if kill {
		s.proc.Signal(unix.SIGKILL)
	}
	s.sock.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	if _, err := s.proc.Wait(ctx); err != nil {
		s.proc.Signal(unix.SIGKILL)
		s.proc.Wait(context.Background())
	}
	cancel()
	s.out.Close()
}

// cancel ends the command a probe that timed out runs: it SIGKILLs the
// server's children (found in /proc as the host sees them, each checked
// through a pidfd to be the server's child still), then takes the
// server's reply for it. Killing the server instead would leave the
// command's corpse to the container's PID 1, which may never reap it. It
// says whether the server is ready for the next probe.
func (s *probeServer) cancel() bool {
	pid := s.proc.Pid
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(data)) {
		child, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		fd, err := unix.PidfdOpen(child, 0)
		if err != nil {
			continue // gone already
		}
		if st, err := proc.ReadStat(child); err == nil && st.PPID == pid {
			unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		}
		unix.Close(fd)
	}
	s.sock.SetReadDeadline(time.Now().Add(time.Second))
	var b [8]byte
	n, err := s.sock.Read(b[:])
	s.sock.SetReadDeadline(time.Time{})
	return err == nil && n == 4
}

// errServerGone says the server ended or failed; the probe is run the
// other way.
var errServerGone = errors.New("the probe server is gone")

// run runs the command in msg (its argv, each string NUL-terminated) and
// returns its exit status and output (at most maxProbeOutput bytes). On
// ctx's end (the probe's timeout) it returns ctx's error: the caller
// cancels the command.
func (s *probeServer) run(ctx context.Context, msg string) (executor.ExitStatus, string, error) {
	s.drain(nil) // what an earlier probe's leftovers wrote
	if _, err := s.sock.Write([]byte(msg)); err != nil {
		return executor.ExitStatus{}, "", fmt.Errorf("%w: %w", errServerGone, err)
	}
	stop := context.AfterFunc(ctx, func() { s.sock.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var b [8]byte
	n, err := s.sock.Read(b[:])
	if ctx.Err() != nil {
		return executor.ExitStatus{}, "", ctx.Err()
	}
	if err != nil || n != 4 {
		return executor.ExitStatus{}, "", fmt.Errorf("%w: read %d bytes: %v", errServerGone, n, err)
	}
	status := int32(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
	if status < 0 {
		return executor.ExitStatus{}, "", fmt.Errorf("%w: fork: %w", errServerGone, syscall.Errno(-status))
	}
	var out []byte
	s.drain(&out)
	ws := syscall.WaitStatus(status)
	st := executor.ExitStatus{Code: ws.ExitStatus()}
	if ws.Signaled() {
		st.Code, st.Signal = 128+int(ws.Signal()), unix.SignalName(ws.Signal())
	}
	return st, strings.TrimSpace(string(out)), nil
}

// drain reads what the pipe holds now without waiting, keeping up to
// maxProbeOutput bytes in *keep (nil: discard) and at most 64 KiB read.
func (s *probeServer) drain(keep *[]byte) {
	rc, err := s.out.SyscallConn()
	if err != nil {
		return
	}
	var buf [4096]byte
	for total := 0; total < 64<<10; {
		n := 0
		rc.Read(func(fd uintptr) bool {
			n, _ = unix.Read(int(fd), buf[:])
			return true // never wait
		})
		if n <= 0 {
			return
		}
		total += n
		if keep != nil && len(*keep) < maxProbeOutput {
			*keep = append(*keep, buf[:min(n, maxProbeOutput-len(*keep))]...)
		}
	}
}

// probeExecServer runs an exec probe through p's probe server, starting
// it when the run has none. used is false when it could not: the caller
// runs the probe the other way.
func probeExecServer(ctx context.Context, rt execer, p *prober, args []string, timeout time.Duration, now time.Time) (ok bool, result string, used bool) {
	msg := strings.Join(args, "\x00") + "\x00"
	if !executor.ProbeServerAvailable() || len(args) > probeServerMaxArgs || len(msg) > probeServerMaxBytes ||
		strings.Count(msg, "\x00") != len(args) || (!p.serverFailed.IsZero() && now.Sub(p.serverFailed) < probeServerRetry) {
		return false, "", false // the exec stage runs it (an argument with a NUL cannot pass)
	}
	if p.server == nil {
		s, err := startProbeServer(ctx, rt, p.name)
		if err != nil {
			if ctx.Err() != nil {
				return false, "timed out after " + timeout.String(), true
			}
			p.serverFailed = now
			return false, "", false
		}
		p.server = s
	}
	st, out, err := p.server.run(ctx, msg)
	switch {
	case ctx.Err() != nil:
		// The timeout: kill the command (or, failing that, the server,
		// which kills the command as it goes).
		if !p.server.cancel() {
			p.server.close(true)
			p.server = nil
		}
		return false, "timed out after " + timeout.String() + " (killed)", true
	case err != nil:
		p.server.close(true)
		p.server, p.serverFailed = nil, now
		return false, "", false
	}
	res := "exited with " + strconv.Itoa(st.Code)
	if out != "" {
		res += ": " + out
	}
	return st.Code == 0, res, true
}
