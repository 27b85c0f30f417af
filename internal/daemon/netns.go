package daemon

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/proc"
)

// Work in a container's network namespace (probes, notify sockets) is done
// on an OS thread that joins the namespace for that work alone: a socket
// stays in the namespace it was made in, so the thread goes back to the
// daemon's own namespace as soon as the socket exists, and is then used by
// other goroutines again. No thread is created or destroyed per probe.

// daemonNetns is the daemon's own network namespace, opened once.
var daemonNetns = sync.OnceValues(func() (*os.File, error) {
	return os.Open("/proc/self/ns/net")
})

// openNetns opens the network namespace of process pid, which must be the
// one that started at start (not a process that took its PID since).
func openNetns(pid int, start uint64) (*os.File, error) {
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil, fmt.Errorf("the container's init is gone: %w", err)
	}
	// The namespace file is open: check that it is our init's.
	if got, zombie, err := proc.StartTime(pid); err != nil || zombie || got != start {
		ns.Close()
		return nil, errors.New("the container's init is gone")
	}
	return ns, nil
}

// inNetns runs fn on an OS thread in network namespace ns, then puts the
// thread back into the daemon's namespace and gives it back to the
// scheduler. Should the way back fail, the thread stays locked to a
// goroutine that ends, and the runtime ends the thread with it: no other
// goroutine ever runs in a container's namespace.
func inNetns(ns *os.File, fn func() error) error {
	home, err := daemonNetns()
	if err != nil {
		return fmt.Errorf("the daemon's own network namespace: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread() // still in the daemon's namespace
			done <- os.NewSyscallError("setns", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			// Not unlocked: this thread ends with the goroutine.
			done <- errors.Join(ferr, fmt.Errorf("unable to return to the daemon's network namespace: %w", os.NewSyscallError("setns", err)))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// socketInNetns makes a socket (unix.Socket's arguments) in network
// namespace ns on the calling goroutine's own thread, for the probes: no
// goroutine is started per probe. The thread joins ns for the socket call
// alone and goes back to the daemon's namespace. Should the way back
// fail, the thread stays locked to the calling goroutine (a prober's,
// which does nothing but probe this container) and ends with it: no
// other goroutine ever runs in the container's namespace.
func socketInNetns(ns *os.File, domain, typ, proto int) (int, error) {
	home, err := daemonNetns()
	if err != nil {
		return -1, fmt.Errorf("the daemon's own network namespace: %w", err)
	}
	runtime.LockOSThread()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread() // still in the daemon's namespace
		return -1, os.NewSyscallError("setns", err)
	}
	fd, err := unix.Socket(domain, typ, proto)
	if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		// Not unlocked: see above.
		return -1, fmt.Errorf("unable to return to the daemon's network namespace: %w", os.NewSyscallError("setns", err))
	}
	runtime.UnlockOSThread()
	return fd, os.NewSyscallError("socket", err)
}
