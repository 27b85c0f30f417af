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
		data, err := os.ReadFile(filepath.Join(paths[k], "cgroup.procs"))
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
		return fmt.Errorf("cgroup %s is unexpectedly frozen (processes %v): it is never joined; thaw it or remove it: %w", dir, pids, ErrCgroupInUse)
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
