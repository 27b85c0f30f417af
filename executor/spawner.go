package executor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/waiter"
)

// spawner forks the machine monitors of a Runtime with spares, a spare's
// or a runner init's (the reaper started with waiter.MonitorEnv=s;
// reaper_amd64.S says the contract). A monitor forked from it costs a
// fork of a process of a few pages; one
// started by this process costs a fork of a large process, an exec, and
// at the exec the closing of every close-on-exec descriptor this process
// holds, which grows with the containers it runs (a pidfd or two each).
// The spawner forks with CLONE_PARENT: the monitor is this process's child,
// as if it had started it, and is reaped the same way.
type spawner struct {
	// ctl is this process's end of the SOCK_SEQPACKET socket,
	// non-blocking: a request waits in the poller, not on a thread.
	ctl *os.File
	pid int
}

// spawnerTitle is the spawner's argv[0], as long as "reconciled-monitor".
const spawnerTitle = "reconciled-spawner"

// spawnerTimeout bounds a request: a spawner that stops answering costs
// one launch this long (the monitor is then started as before), and is
// replaced.
const spawnerTimeout = 5 * time.Second

// startSpawner starts a spawner (one per Runtime with spares, on the first
// monitor it is to fork).
func (r *Runtime) startSpawner() (*spawner, error) {
	reaper, err := r.reaperExe()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	defer unix.Close(fds[1]) // the spawner's end blocks
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, os.NewSyscallError("fcntl", err)
	}
	ctl := os.NewFile(uintptr(fds[0]), "spawner")
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		ctl.Close()
		return nil, err
	}
	defer null.Close()
	closed := ^uintptr(0) // ForkExec closes it in the child
	// The environment and argv[1] are the monitors' (launch): they are
	// forked with them, and each renames argv[0] "reconciled-monitor"
	// (as long). Exec'd as fd 6, as launch does, for the same reason.
	pid, err := syscall.ForkExec("/proc/self/fd/6",
		[]string{spawnerTitle, strings.Repeat(" ", monitorTitleWidth)}, &syscall.ProcAttr{
			Env:   append([]string{waiter.MonitorEnv + "=s"}, initEnv(true)...),
			Files: []uintptr{null.Fd(), null.Fd(), null.Fd(), uintptr(fds[1]), closed, closed, reaper.Fd()},
			Sys:   &syscall.SysProcAttr{Setsid: true},
		})
	if err != nil {
		ctl.Close()
		return nil, fmt.Errorf("start spawner: %w", err)
	}
	if r.reap {
		go reapWhenDone(pid)
	}
	return &spawner{ctl: ctl, pid: pid}, nil
}

// fork has the spawner fork a monitor with flags (the value of
// waiter.MonitorEnv) on the sync socket, the lifeline's read end and the
// init's binary, and returns its PID.
func (sp *spawner) fork(flags string, sock, lifeline, initExe *os.File) (int, error) {
	if err := sp.ctl.SetDeadline(time.Now().Add(spawnerTimeout)); err != nil {
		return 0, fmt.Errorf("spawner %d: %w", sp.pid, err)
	}
	rc, err := sp.ctl.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("spawner %d: %w", sp.pid, err)
	}
	rights := unix.UnixRights(int(sock.Fd()), int(lifeline.Fd()), int(initExe.Fd()))
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), []byte(flags), rights, nil, 0)
		return serr != unix.EAGAIN && serr != unix.EINTR
	}); err != nil {
		serr = err
	}
	if serr != nil {
		return 0, fmt.Errorf("spawner %d: send: %w", sp.pid, os.NewSyscallError("sendmsg", serr))
	}
	var b [4]byte
	if n, err := sp.ctl.Read(b[:]); err != nil || n != len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("no answer (it exited)")
		}
		return 0, fmt.Errorf("spawner %d: answer: %w", sp.pid, err)
	}
	pid := int(int32(binary.LittleEndian.Uint32(b[:])))
	if pid <= 0 {
		return 0, fmt.Errorf("spawner %d: fork a monitor: %w", sp.pid, unix.Errno(-pid))
	}
	return pid, nil
}

// close ends the spawner: EOF on its socket, and it exits. The monitors
// it forked are not its children and go on.
func (sp *spawner) close() {
	sp.ctl.Close()
}

// spawners holds a Runtime's spawner, started on first use and replaced
// after a failure.
type spawners struct {
	mu     sync.Mutex
	sp     *spawner
	closed bool
}

// errSpawnerClosed: the Runtime was closed.
var errSpawnerClosed = errors.New("spawner: the runtime is closed")

// forkMonitor has the Runtime's spawner fork a machine monitor whose init
// is a spare's or the runner init (the spawner's environment is a spare
// init's, which the runner init ignores).
// An error means no monitor was started: the caller starts it itself.
func (r *Runtime) forkMonitor(flags string, sock, lifeline, initExe *os.File) (int, error) {
	ss := &r.spawners
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return 0, errSpawnerClosed
	}
	if ss.sp == nil {
		sp, err := r.startSpawner()
		if err != nil {
			return 0, err
		}
		ss.sp = sp
	}
	pid, err := ss.sp.fork(flags, sock, lifeline, initExe)
	if err != nil {
		ss.sp.close()
		ss.sp = nil
	}
	return pid, err
}

// closeSpawner ends the Runtime's spawner, if it has one, for good.
func (r *Runtime) closeSpawner() {
	ss := &r.spawners
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.closed = true
	if ss.sp != nil {
		ss.sp.close()
		ss.sp = nil
	}
}
