package executor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Event types of Events.
const (
	EventOOM  = "oom"  // the OOM killer acted in the container's cgroup
	EventExit = "exit" // the container's init exited
)

// Event is one thing that happened to a container, as `runtime events`
// prints it (one JSON object per line).
type Event struct {
	Type string         `json:"type"`
	ID   string         `json:"id"`
	Time time.Time      `json:"time"`
	Data map[string]any `json:"data,omitempty"`
}

// Events reports container id's OOM kills and its exit to emit, as they
// happen, until the container has exited (the exit event is the last),
// ctx ends or emit fails. OOM kills are seen through memory.events of the
// unified hierarchy (inotify) or the v1 memory controller's
// memory.oom_control (an eventfd registered in cgroup.event_control); the
// exit through a pidfd of the init, reported once the monitor recorded it.
func (r *Runtime) Events(ctx context.Context, id string, emit func(Event) error) error {
	st, err := ReadState(r.root, id)
	if err != nil {
		return err
	}
	exitEvent := func() error {
		pid, start := st.waited()
		if err := waitProcess(ctx, pid, start); err != nil {
			return err
		}
		end, err := ReadState(r.root, id)
		if err != nil {
			return err
		}
		data := map[string]any{"exitCode": end.ExitCode, "pid": end.Pid}
		if end.ExitSignal != "" {
			data["signal"] = end.ExitSignal
		}
		if end.OOMKilled {
			data["oomKilled"] = true
		}
		t := end.Finished
		if t.IsZero() {
			t = time.Now().UTC()
		}
		return emit(Event{Type: EventExit, ID: id, Time: t, Data: data})
	}
	if st.Status == StatusStopped {
		return exitEvent()
	}
	if st.Status == StatusCreating {
		return &StateTransitionError{ID: id, Op: "watch", From: st.Status}
	}
	pidfd, err := openPidfd(st.Pid, st.PidStartTime)
	if err != nil {
		if errors.Is(err, errGone) {
			return exitEvent()
		}
		return err
	}
	defer unix.Close(pidfd)
	oom, err := watchOOM(st.CgroupPaths)
	if err != nil {
		return fmt.Errorf("events of container %s: %w", id, err)
	}
	defer oom.close()
	fds := []int{pidfd}
	if oom.fd >= 0 {
		fds = append(fds, oom.fd)
	}
	for {
		i, err := waitFds(ctx, fds...)
		if err != nil {
			return err
		}
		if i == 0 {
			// A last look: an OOM kill of the init itself.
			if n, ok := oom.kills(); ok && n > oom.seen {
				if err := emit(Event{Type: EventOOM, ID: id, Time: time.Now().UTC(), Data: map[string]any{"oomKills": n}}); err != nil {
					return err
				}
			}
			return exitEvent()
		}
		if !oom.drain() {
			continue
		}
		n, ok := oom.kills()
		if ok && n <= oom.seen {
			continue // memory.events changed for another counter
		}
		data := map[string]any{}
		if ok {
			data["oomKills"] = n
			oom.seen = n
		}
		if err := emit(Event{Type: EventOOM, ID: id, Time: time.Now().UTC(), Data: data}); err != nil {
			return err
		}
	}
}

// oomWatch is an fd that becomes readable when the cgroup's OOM state
// changes, and where to read the oom_kill counter.
type oomWatch struct {
	fd      int    // inotify (v2) or eventfd (v1); -1: none
	v1      bool   // fd is an eventfd
	counter string // memory.events or memory.oom_control
	seen    uint64
	extra   int // v1: memory.oom_control, held open while registered
}

func watchOOM(paths map[string]string) (*oomWatch, error) {
	w := &oomWatch{fd: -1, extra: -1}
	if dir, ok := paths[""]; ok {
		p := filepath.Join(dir, "memory.events")
		if _, err := os.Stat(p); err == nil {
			fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
			if err != nil {
				return nil, os.NewSyscallError("inotify_init1", err)
			}
			if _, err := unix.InotifyAddWatch(fd, p, unix.IN_MODIFY); err != nil {
				unix.Close(fd)
				return nil, fmt.Errorf("watch %s: %w", p, err)
			}
			w.fd, w.counter = fd, p
			w.seen, _ = w.kills()
			return w, nil
		}
	}
	if dir, ok := paths["memory"]; ok {
		p := filepath.Join(dir, "memory.oom_control")
		ctl, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			unix.Close(ctl)
			return nil, os.NewSyscallError("eventfd", err)
		}
		reg := strconv.Itoa(efd) + " " + strconv.Itoa(ctl)
		if err := os.WriteFile(filepath.Join(dir, "cgroup.event_control"), []byte(reg), 0); err != nil {
			unix.Close(ctl)
			unix.Close(efd)
			return nil, fmt.Errorf("register for OOM notifications in %s: %w", dir, err)
		}
		w.fd, w.v1, w.extra, w.counter = efd, true, ctl, p
		w.seen, _ = w.kills()
	}
	return w, nil
}

// drain empties the fd; false if nothing was there.
func (w *oomWatch) drain() bool {
	buf := make([]byte, 4096)
	got := false
	for {
		n, err := unix.Read(w.fd, buf)
		if n > 0 {
			got = true
			if w.v1 && n == 8 && binary.NativeEndian.Uint64(buf) > 0 {
				return true
			}
			continue
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return got
	}
}

// kills reads the oom_kill counter.
func (w *oomWatch) kills() (uint64, bool) {
	if w.counter == "" {
		return 0, false
	}
	return readKeyedCounter(w.counter, "oom_kill")
}

func (w *oomWatch) close() {
	if w.fd >= 0 {
		unix.Close(w.fd)
	}
	if w.extra >= 0 {
		unix.Close(w.extra)
	}
}
