package executor

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"reconciled.dev/reconciled/executor/cgroups"
)

// cgroupDriverByName builds a cgroup driver by its Name() in processes that
// were not handed one (the monitor reads OOM kills through it).
var cgroupDriverByName = map[string]func() (cgroups.Driver, error){
	"cgroupfs": cgroups.NewCgroupfs,
	"systemd": func() (cgroups.Driver, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return cgroups.NewSystemd(ctx)
	},
}

// readOOMKills returns the oom_kill count of a container's cgroup: from
// the memory controller's file in paths (one read), else through the named
// driver when this binary has it.
func readOOMKills(driver, id, cgroupPath string, paths map[string]string) (uint64, bool) {
	if p, ok := paths[""]; ok {
		if n, ok := readKeyedCounter(filepath.Join(p, "memory.events"), "oom_kill"); ok {
			return n, true
		}
	}
	if p, ok := paths["memory"]; ok {
		if n, ok := readKeyedCounter(filepath.Join(p, "memory.oom_control"), "oom_kill"); ok {
			return n, true
		}
	}
	if newDriver, ok := cgroupDriverByName[driver]; ok {
		if d, err := newDriver(); err == nil {
			if m, err := d.Manager(id, cgroupPath); err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if st, err := m.Stats(ctx); err == nil {
					return st.OOMKills, true
				}
			}
		}
	}
	return 0, false
}

// readKeyedCounter reads "key value" lines and returns key's value.
func readKeyedCounter(path, key string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
