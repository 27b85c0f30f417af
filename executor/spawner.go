package executor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/waiter"
)

// spawner forks the machine monitors of a Runtime's spares (the reaper
// started with waiter.MonitorEnv=s; reaper_amd64.S says the contract). A
// monitor forked from it costs a fork of a process of a few pages; one
// started by this process costs a fork of a large process, an exec, and
// at the exec the closing of every close-on-exec descriptor this process
// holds, which grows with the containers it runs (a pidfd or two each).
// The spawner forks with CLONE_PARENT: the monitor is this process's child,
// as if it had started it, and is reaped the same way.
type spawner struct {
	ctl int // this process's end of the SOCK_SEQPACKET socket
	pid int
}

// spawnerTitle is the spawner's argv[0], as long as "reconciled-monitor".
const spawnerTitle = "reconciled-spawner"

// spawnerTimeout bounds a request: a spawner that stops answering costs one
// refill this long, and is then replaced.
const spawnerTimeout = 5

// startSpawner starts a spawner (one per Runtime with spares, on the first
// spare's launch).
func (r *Runtime) startSpawner() (*spawner, error) {
	reaper, err := r.reaperExe()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	defer unix.Close(fds[1])
	tv := unix.Timeval{Sec: spawnerTimeout}
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fds[0], unix.SOL_SOCKET, opt, &tv); err != nil {
			unix.Close(fds[0])
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		unix.Close(fds[0])
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
		unix.Close(fds[0])
		return nil, fmt.Errorf("start spawner: %w", err)
	}
	if r.reap {
		go reapWhenDone(pid)
	}
	return &spawner{ctl: fds[0], pid: pid}, nil
}

// fork has the spawner fork a monitor with flags (the value of
// waiter.MonitorEnv) on the sync socket, the lifeline's read end and the
// init's binary, and returns its PID.
func (z *spawner) fork(flags string, sock, lifeline, initExe *os.File) (int, error) {
	rights := unix.UnixRights(int(sock.Fd()), int(lifeline.Fd()), int(initExe.Fd()))
	if err := retryEINTR(func() error { return unix.Sendmsg(z.ctl, []byte(flags), rights, nil, 0) }); err != nil {
		return 0, fmt.Errorf("spawner %d: send: %w", z.pid, os.NewSyscallError("sendmsg", err))
	}
	var b [4]byte
	var n int
	if err := retryEINTR(func() error {
		var err error
		n, err = unix.Read(z.ctl, b[:])
		return err
	}); err != nil {
		return 0, fmt.Errorf("spawner %d: answer: %w", z.pid, os.NewSyscallError("read", err))
	}
	if n != len(b) {
		return 0, fmt.Errorf("spawner %d: no answer (it exited)", z.pid)
	}
	pid := int(int32(binary.LittleEndian.Uint32(b[:])))
	if pid <= 0 {
		return 0, fmt.Errorf("spawner %d: fork a monitor: %w", z.pid, unix.Errno(-pid))
	}
	return pid, nil
}

// close ends the spawner: EOF on its socket, and it exits. The monitors
// it forked are not its children and go on.
func (z *spawner) close() {
	unix.Close(z.ctl)
}

// spawners holds a Runtime's spawner, started on first use and replaced
// after a failure.
type spawners struct {
	mu     sync.Mutex
	z      *spawner
	closed bool
}

// errSpawnerClosed: the Runtime was closed.
var errSpawnerClosed = errors.New("spawner: the runtime is closed")

// forkMonitor has the Runtime's spawner fork a spare's machine monitor.
// An error means no monitor was started: the caller starts it itself.
func (r *Runtime) forkMonitor(flags string, sock, lifeline, initExe *os.File) (int, error) {
	zs := &r.spawners
	zs.mu.Lock()
	defer zs.mu.Unlock()
	if zs.closed {
		return 0, errSpawnerClosed
	}
	if zs.z == nil {
		z, err := r.startSpawner()
		if err != nil {
			return 0, err
		}
		zs.z = z
	}
	pid, err := zs.z.fork(flags, sock, lifeline, initExe)
	if err != nil {
		zs.z.close()
		zs.z = nil
	}
	return pid, err
}

// closeSpawner ends the Runtime's spawner, if it has one, for good.
func (r *Runtime) closeSpawner() {
	zs := &r.spawners
	zs.mu.Lock()
	defer zs.mu.Unlock()
	zs.closed = true
	if zs.z != nil {
		zs.z.close()
		zs.z = nil
	}
}
