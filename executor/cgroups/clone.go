package cgroups

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Cloning into a cgroup: a process cloned with clone3's CLONE_INTO_CGROUP
// starts in the cgroup2 directory it names (Linux 5.7), as crun's
// containers do, and the kernel takes cgroup_threadgroup_rwsem for reading
// only: unlike a write of its PID to cgroup.procs, no wait for an RCU
// grace period (see Spare). On a pure v2 host that is the only hierarchy;
// on a hybrid one the v1 hierarchies are still joined by a move.

// CloneTarget is a manager whose cgroup2 directory a process can be cloned
// into: the cgroupfs driver's where a cgroup2 hierarchy is mounted.
type CloneTarget interface {
	// OpenUnified opens the cgroup's directory in the cgroup2 hierarchy
	// (made by Apply with pid 0) for CLONE_INTO_CGROUP; nil and no error
	// where no cgroup2 hierarchy is in use.
	OpenUnified() (*os.File, error)
	// ApplyCloned moves pid, cloned into the cgroup2 directory already,
	// into the cgroup of every other hierarchy (Apply with pid, less the
	// cgroup2 move).
	ApplyCloned(ctx context.Context, pid int) error
}

// EarlyCloneTarget is a CloneTarget whose cgroup2 directory carries no
// controller, as in the hybrid layout, where the limits are the v1
// hierarchies'. A process can be cloned into that directory as soon as it
// exists, while Apply (pid 0) makes the v1 cgroups and sets the limits;
// ApplyCloned then moves it into those as usual. A create's init so starts
// while its cgroups are made instead of after.
type EarlyCloneTarget interface {
	CloneTarget
	// MakeUnified makes the cgroup2 directory alone, before Apply, and
	// reports true; false, with nothing made, where the layout is not
	// hybrid. A failed Apply leaves that directory to Destroy.
	MakeUnified() (bool, error)
}

func (m *fsManager) MakeUnified() (bool, error) {
	h, ok := m.unified()
	if !ok || m.mode != ModeHybrid {
		return false, nil
	}
	made, err := mkdirs(h.mount, m.path)
	m.mu.Lock()
	m.created[h.mount] = append(m.created[h.mount], made...)
	m.unifiedEarly = true
	m.mu.Unlock()
	if err != nil {
		return false, err
	}
	return true, nil
}

// ClonesIntoCgroup says whether a cgroup2 hierarchy is mounted, which a
// container's init can be cloned into (CloneTarget).
func (d *cgroupfs) ClonesIntoCgroup() bool { return d.layout.Unified != "" }

func (m *fsManager) OpenUnified() (*os.File, error) {
	h, ok := m.unified()
	if !ok {
		return nil, nil
	}
	fd, err := unix.Open(h.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening cgroup %s: %w", h.dir, os.NewSyscallError("open", err))
	}
	return os.NewFile(uintptr(fd), h.dir), nil
}

// JoinFiles returns the tasks file of the cgroup in each v1 hierarchy: a
// single-threaded process cloned into the cgroup2 directory that writes 0
// to each is in the cgroup everywhere, with no PID written (see
// SelfPlacer).
func (m *fsManager) JoinFiles() []string { return tasksFiles(m.hs) }

// tasksFiles returns the tasks file of each v1 hierarchy of hs.
func tasksFiles(hs []managed) []string {
	var out []string
	for _, h := range hs {
		if h.names != nil {
			out = append(out, filepath.Join(h.dir, "tasks"))
		}
	}
	return out
}

func (m *fsManager) ApplyCloned(ctx context.Context, pid int) error {
	if pid <= 0 {
		return fmt.Errorf("invalid pid %d", pid)
	}
	v := strconv.Itoa(pid)
	for _, h := range m.hs {
		if h.names == nil {
			continue
		}
		if err := appendFile(h.dir, "cgroup.procs", v); err != nil {
			return fmt.Errorf("moving pid %d into cgroup %s: %w", pid, m.path, err)
		}
	}
	return ctx.Err()
}
