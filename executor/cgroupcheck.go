package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/sys"
)

// CheckCgroupFree fails, wrapping ErrCgroupInUse, when the cgroup of m
// exists and is frozen ("unexpectedly frozen", as runc says) or holds
// processes (named with their PIDs), in any hierarchy: a new container's
// init moved into it would freeze with it, and the create hang, or share
// it with processes that are not the container's. A cgroup that does not
// exist, or exists empty and thawed, is free.
func CheckCgroupFree(ctx context.Context, m cgroups.Manager) error {
	paths := m.Paths()
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var pids []int
	var where string
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		data, err := sys.ReadFile(filepath.Join(paths[k], "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("unable to check cgroup %s: %w", paths[k], err)
		}
		for _, f := range bytes.Fields(data) {
			if p, err := strconv.Atoi(string(f)); err == nil && !slices.Contains(pids, p) {
				pids = append(pids, p)
				if where == "" {
					where = paths[k]
				}
			}
		}
	}
	slices.Sort(pids)
	if frozen(paths) {
		dir := paths["freezer"]
		if dir == "" {
			dir = paths[""]
		}
		// "container's cgroup unexpectedly frozen" is runc's wording.
		return fmt.Errorf("container's cgroup unexpectedly frozen: %s (processes %v) is never joined; thaw it or remove it: %w", dir, pids, ErrCgroupInUse)
	}
	if len(pids) > 0 {
		return fmt.Errorf("cgroup %s already holds processes %v that are not this container's: it is never joined; stop them or remove the cgroup: %w", where, pids, ErrCgroupInUse)
	}
	return nil
}

// cgroupName is the directory that names m's cgroup in messages: the
// pids, memory or freezer hierarchy's, or the unified one.
func cgroupName(m cgroups.Manager) string {
	p := m.Paths()
	for _, k := range []string{"pids", "memory", "freezer", ""} {
		if d, ok := p[k]; ok {
			return d
		}
	}
	for _, d := range p {
		return d
	}
	return "?"
}

// MonitoredIn says whether a process in m's cgroup is the child of a
// monitor of container id (argv "reconciled-monitor ID"): the cgroup then
// holds a container this runtime created under that name, even when its
// state is gone.
func MonitoredIn(ctx context.Context, m cgroups.Manager, id string) bool {
	pids, err := m.Procs(ctx)
	if err != nil {
		return false
	}
	for _, p := range pids {
		if ppid := parentOf(p); ppid > 0 && monitorOf(ppid) == id {
			return true
		}
	}
	return false
}

// parentOf is pid's parent from /proc/PID/status (0: unknown).
func parentOf(pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte("PPid:")); ok {
			n, _ := strconv.Atoi(string(bytes.TrimSpace(v)))
			return n
		}
	}
	return 0
}

// monitorOf is the container ID a monitor process serves ("" when pid is
// not a monitor): argv[1] of "reconciled-monitor ID" (setTitle).
func monitorOf(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	args := bytes.Split(data, []byte{0})
	if len(args) < 2 || string(args[0]) != "reconciled-monitor" {
		return ""
	}
	return string(bytes.TrimRight(args[1], " \x00"))
}
