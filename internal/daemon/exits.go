package daemon

import (
	"errors"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
)

// exitWatcher holds a pidfd on every live container's init, all in one
// epoll set served by one goroutine: an exit is seen when it happens, with
// no polling. When an init exits the watcher then waits, the same way, for
// the container's monitor, which records the exit status and exits right
// after; only then is the container reported (invalidate, then notify), so
// that the next observation already has the exit code.
type exitWatcher struct {
	root       string // executor root, to find a container's monitor
	invalidate func(name string)
	notify     func(name string)
	log        *slog.Logger

	epfd int
	wake int // eventfd that ends Run

	mu     sync.Mutex
	byName map[string]*pidWatch
	byFd   map[int32]*pidWatch
	closed bool
}

type pidWatch struct {
	name    string
	pid     int
	start   uint64
	fd      int
	monitor bool // watching the monitor after the init exited
}

func newExitWatcher(root string, log *slog.Logger) (*exitWatcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return &exitWatcher{
		root: root, log: log, epfd: epfd, wake: wake,
		invalidate: func(string) {}, notify: func(string) {},
		byName: map[string]*pidWatch{}, byFd: map[int32]*pidWatch{},
	}, nil
}

// Watch watches container name's init (pid, started at start). Watching
// the same process again is a no-op, so callers may call it on every
// observation. An init that is already gone is reported at once.
func (w *exitWatcher) Watch(name string, pid int, start uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if cur := w.byName[name]; cur != nil {
		if cur.monitor || (cur.pid == pid && cur.start == start) {
			return
		}
		w.dropLocked(cur)
	}
	if w.addLocked(&pidWatch{name: name, pid: pid, start: start}) {
		return
	}
	// The init is gone already: wait for the monitor to record its exit.
	if !w.watchMonitorLocked(name) {
		go w.exited(name)
	}
}

// watchMonitorLocked watches container name's monitor; false when it is
// gone.
func (w *exitWatcher) watchMonitorLocked(name string) bool {
	st, err := executor.ReadState(w.root, name)
	if err != nil || st.MonitorPid <= 0 {
		return false
	}
	return w.addLocked(&pidWatch{name: name, pid: st.MonitorPid, start: st.MonitorStartTime, monitor: true})
}

// addLocked opens a pidfd on pw's process and adds it to the epoll set. It
// returns false when the process is gone (or its PID was reused).
func (w *exitWatcher) addLocked(pw *pidWatch) bool {
	fd, err := unix.PidfdOpen(pw.pid, 0)
	if err != nil {
		if !errors.Is(err, unix.ESRCH) {
			w.log.Warn("unable to watch container process", "container", pw.name, "pid", pw.pid, "err", os.NewSyscallError("pidfd_open", err))
		}
		return false
	}
	// The pidfd pins the process: if the start time matches now, fd is it.
	if got, _, err := executor.ProcStartTime(pw.pid); err != nil || got != pw.start {
		unix.Close(fd)
		return false
	}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		w.log.Warn("unable to watch container process", "container", pw.name, "pid", pw.pid, "err", os.NewSyscallError("epoll_ctl", err))
		return false
	}
	pw.fd = fd
	w.byName[pw.name] = pw
	w.byFd[int32(fd)] = pw
	return true
}

func (w *exitWatcher) dropLocked(pw *pidWatch) {
	unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, pw.fd, nil)
	unix.Close(pw.fd)
	delete(w.byFd, int32(pw.fd))
	if w.byName[pw.name] == pw {
		delete(w.byName, pw.name)
	}
}

// Forget stops watching container name (it is being deleted).
func (w *exitWatcher) Forget(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if pw := w.byName[name]; pw != nil {
		w.dropLocked(pw)
	}
}

// Len is how many processes are watched.
func (w *exitWatcher) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.byName)
}

func (w *exitWatcher) exited(name string) {
	w.invalidate(name)
	w.notify(name)
}

// Run serves the epoll set until Close.
func (w *exitWatcher) Run() {
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			w.log.Error("exit watcher stopped", "err", os.NewSyscallError("epoll_wait", err))
			return
		}
		var done []string
		w.mu.Lock()
		for _, ev := range events[:n] {
			if int(ev.Fd) == w.wake {
				w.closeLocked()
				w.mu.Unlock()
				return
			}
			pw := w.byFd[ev.Fd]
			if pw == nil {
				continue
			}
			w.dropLocked(pw)
			if !pw.monitor && w.watchMonitorLocked(pw.name) {
				continue // the init exited: wait for the monitor to record it
			}
			done = append(done, pw.name)
		}
		w.mu.Unlock()
		for _, name := range done {
			w.exited(name)
		}
	}
}

// Close stops Run and closes every pidfd.
func (w *exitWatcher) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	var one [8]byte
	one[0] = 1
	if _, err := unix.Write(w.wake, one[:]); err != nil {
		w.closeLocked() // Run is not there to do it
	}
}

func (w *exitWatcher) closeLocked() {
	if w.closed {
		return
	}
	w.closed = true
	for _, pw := range w.byFd {
		unix.Close(pw.fd)
	}
	w.byFd, w.byName = map[int32]*pidWatch{}, map[string]*pidWatch{}
	unix.Close(w.epfd)
	unix.Close(w.wake)
}
