package daemon

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/proc"
)

// exitWatcher holds a pidfd on every live container's init, all in one
// epoll set served by one goroutine: an exit is seen when it happens, with
// no polling. When an init exits the watcher then waits, the same way, for
// the container's monitor, which records the exit status and exits right
// after; only then is the container reported (invalidate, then notify), so
// that the next observation already has the exit code.
//
// A process is taken for gone only on evidence (ESRCH, another start time
// under its PID, its pidfd polling readable). A process that cannot be
// watched (EMFILE, ENOMEM…) is not reported as exited: it is looked at
// again after watchRetry (notify), and watched then.
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
	retry  map[string]bool // containers to look at again after watchRetry
	closed bool
}

// watchRetry is how long after a failure to watch a process the container
// is looked at again.
const watchRetry = 5 * time.Second

// errGone: the process to watch has exited, or its PID was reused.
var errGone = errors.New("process gone")

type pidWatch struct {
	name    string
	pid     int
	start   uint64
	fd      int
	monitor bool // watching the monitor after the init exited
}

// newExitWatcher returns the watcher of the containers under the executor
// root; an exit is reported to invalidate, then notify (nil: nowhere).
func newExitWatcher(root string, log *slog.Logger, invalidate, notify func(name string)) (*exitWatcher, error) {
	if invalidate == nil {
		invalidate = func(string) {}
	}
	if notify == nil {
		notify = func(string) {}
	}
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
		invalidate: invalidate, notify: notify,
		byName: map[string]*pidWatch{}, byFd: map[int32]*pidWatch{}, retry: map[string]bool{},
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
	err := w.addLocked(&pidWatch{name: name, pid: pid, start: start})
	if errors.Is(err, errGone) {
		// The init is gone already: wait for the monitor to record its
		// exit, or report it now (the observer waits a moment for the
		// monitor, and says what it sees).
		if w.watchMonitorLocked(name) != nil {
			go w.exited(name)
		}
		return
	}
	if err != nil && w.retryLocked(name) {
		// Not evidence of anything: look again later.
		w.log.Warn("unable to watch container process; looking again later", "container", name, "pid", pid,
			"retryIn", watchRetry, "err", err)
	}
}

// retryLocked has container name looked at again (notify) after
// watchRetry, once however often it is asked meanwhile; false when that
// was already scheduled.
func (w *exitWatcher) retryLocked(name string) bool {
	if w.retry[name] {
		return false
	}
	w.retry[name] = true
	time.AfterFunc(watchRetry, func() {
		w.mu.Lock()
		delete(w.retry, name)
		closed := w.closed
		w.mu.Unlock()
		if !closed {
			w.notify(name)
		}
	})
	return true
}

// watchMonitorLocked watches container name's monitor; errGone when it
// is gone (or there is none).
func (w *exitWatcher) watchMonitorLocked(name string) error {
	st, err := executor.ReadState(w.root, name)
	if errors.Is(err, executor.ErrNotExist) {
		return errGone
	}
	if err != nil {
		return err
	}
	if st.MonitorPid <= 0 {
		return errGone
	}
	return w.addLocked(&pidWatch{name: name, pid: st.MonitorPid, start: st.MonitorStartTime, monitor: true})
}

// addLocked opens a pidfd on pw's process and adds it to the epoll set. It
// returns errGone when the process is gone (or its PID was reused), and
// the error when it could not tell.
func (w *exitWatcher) addLocked(pw *pidWatch) error {
	fd, err := unix.PidfdOpen(pw.pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return os.NewSyscallError("pidfd_open", err)
	}
	// The pidfd pins the process: if the start time matches now, fd is it.
	got, _, err := proc.StartTime(pw.pid)
	if err != nil {
		unix.Close(fd)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return err
	}
	if got != pw.start {
		unix.Close(fd)
		return errGone
	}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		return os.NewSyscallError("epoll_ctl", err)
	}
	pw.fd = fd
	w.byName[pw.name] = pw
	w.byFd[int32(fd)] = pw
	return nil
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
			if !pw.monitor && w.watchMonitorLocked(pw.name) == nil {
				continue // the init exited: wait for the monitor to record it
			}
			// The exit is evidence: report it now, even when the monitor
			// could not be watched (the observer waits for it a moment).
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
