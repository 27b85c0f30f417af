package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/proc"
)

// errGone: the process is not there any more, or its PID now belongs to
// another process.
var errGone = errors.New("process is gone")

// openPidfd opens a pidfd for pid and then checks that the process it
// refers to started at start, so that a recycled PID is never signalled.
func openPidfd(pid int, start uint64) (int, error) {
	if pid <= 0 {
		return -1, errGone
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return -1, errGone
		}
		return -1, os.NewSyscallError("pidfd_open", err)
	}
	// The pidfd pins the process: if the start time matches now, fd is it.
	got, _, err := proc.StartTime(pid)
	if err != nil || got != start {
		unix.Close(fd)
		return -1, errGone
	}
	return fd, nil
}

// signalPidfd sends sig through a pidfd. ESRCH (exited meanwhile) is errGone.
func signalPidfd(fd int, sig unix.Signal) error {
	err := unix.PidfdSendSignal(fd, sig, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return errGone
	}
	return os.NewSyscallError("pidfd_send_signal", err)
}

// waitFds blocks until one of fds is readable or hung up, or ctx ends. It
// returns the index of the first ready fd.
func waitFds(ctx context.Context, fds ...int) (int, error) {
	pfds := make([]unix.PollFd, 0, len(fds)+1)
	for _, fd := range fds {
		pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return -1, context.Cause(ctx)
		}
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
			return -1, os.NewSyscallError("pipe2", err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		stop := context.AfterFunc(ctx, func() {
			defer wg.Done()
			unix.Write(p[1], []byte{0})
		})
		defer func() {
			if stop() {
				wg.Done()
			}
			wg.Wait()
			unix.Close(p[0])
			unix.Close(p[1])
		}()
		pfds = append(pfds, unix.PollFd{Fd: int32(p[0]), Events: unix.POLLIN})
	}
	for {
		_, err := unix.Poll(pfds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1, os.NewSyscallError("poll", err)
		}
		for i := range fds {
			if pfds[i].Revents != 0 {
				return i, nil
			}
		}
		if len(pfds) > len(fds) && pfds[len(fds)].Revents != 0 {
			return -1, context.Cause(ctx)
		}
	}
}

// waitProcess waits until the process (pid, start) has exited.
func waitProcess(ctx context.Context, pid int, start uint64) error {
	fd, err := openPidfd(pid, start)
	if err != nil {
		if errors.Is(err, errGone) {
			return nil
		}
		return err
	}
	defer unix.Close(fd)
	_, err = waitFds(ctx, fd)
	return err
}

// closeExtraFds marks every descriptor above 2 close-on-exec.
func closeExtraFds() error {
	err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// Kernels before 5.11: walk /proc/self/fd.
	entries, rerr := os.ReadDir("/proc/self/fd")
	if rerr != nil {
		return fmt.Errorf("close_range: %v; list fds: %w", err, rerr)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		unix.CloseOnExec(fd)
	}
	return nil
}

func retryEINTR(f func() error) error {
	for {
		err := f()
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
