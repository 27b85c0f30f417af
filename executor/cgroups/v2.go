package cgroups

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// setV2 writes r to a cgroup2 directory: the device rules first (an eBPF
// program, see setDevicesV2; an empty list leaves the device policy as it
// is), memory.swap.max before memory.max (runc's order), memory.low,
// cpu.weight, cpu.max, cpu.max.burst, cpuset.cpus and cpuset.mems,
// pids.max, io weight and io.max, hugetlb.<size>.max (network, v1 only, is
// refused), then each r.Unified file last so that
// it wins. The v1-only
// memory knobs (swappiness, kernel memory and kernelTCP, which v2 counts
// in memory.max, disableOOMKiller) are ignored.
func setV2(dir string, r *specs.LinuxResources) error {
	if hasRealtime(r.CPU) {
		return errors.New("linux.resources.cpu.realtimePeriod and realtimeRuntime need cgroup v1: cgroup v2 has no realtime group scheduling")
	}
	if hasNetwork(r.Network) {
		return errNetworkV2
	}
	if len(r.Devices) > 0 {
		if err := setDevicesV2(dir, r.Devices); err != nil {
			return err
		}
	}
	if mem := r.Memory; mem != nil {
		limit := deref(mem.Limit)
		swap, ok, err := swapV2(deref(mem.Swap), limit)
		if err != nil {
			return err
		}
		if ok {
			if err := writeFile(dir, "memory.swap.max", swap); err != nil {
				// No swap accounting: "no limit" and "no swap" mean
				// nothing then.
				if !(errors.Is(err, os.ErrNotExist) && (swap == "max" || swap == "0")) {
					return err
				}
			}
		}
		if limit != 0 {
			if err := writeFile(dir, "memory.max", limitValue(limit, true)); err != nil {
				return err
			}
		}
		if mem.Reservation != nil && *mem.Reservation != 0 {
			if err := writeFile(dir, "memory.low", limitValue(*mem.Reservation, true)); err != nil {
				return err
			}
		}
	}
	if c := r.CPU; c != nil {
		if w := SharesToWeight(deref(c.Shares)); w != 0 {
			if err := writeFile(dir, "cpu.weight", strconv.FormatUint(w, 10)); err != nil {
				return err
			}
		}
		if v, ok := cpuMaxV2(deref(c.Quota), deref(c.Period)); ok {
			if err := writeFile(dir, "cpu.max", v); err != nil {
				return err
			}
		}
		if c.Burst != nil {
			if err := writeFile(dir, "cpu.max.burst", strconv.FormatUint(*c.Burst, 10)); err != nil {
				return err
			}
		}
		if err := setCpuset(dir, c); err != nil {
			return err
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		if err := writeFile(dir, "pids.max", pidsValue(*r.Pids.Limit)); err != nil {
			return err
		}
	}
	if hasBlockIO(r.BlockIO) {
		if err := setBlockIOV2(dir, r.BlockIO); err != nil {
			return err
		}
	}
	if len(r.HugepageLimits) > 0 {
		if err := setHugetlb(dir, r.HugepageLimits, "max"); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(r.Unified))
	for k := range r.Unified {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
			return fmt.Errorf("invalid linux.resources.unified key %q", k)
		}
		if err := writeFile(dir, k, r.Unified[k]); err != nil {
			return err
		}
	}
	return nil
}

// setCpuset writes cpuset.cpus and cpuset.mems where c sets them: v1's
// cpuset hierarchy and cgroup2 name them alike.
func setCpuset(dir string, c *specs.LinuxCPU) error {
	if c.Cpus != "" {
		if err := writeFile(dir, "cpuset.cpus", c.Cpus); err != nil {
			return err
		}
	}
	if c.Mems != "" {
		if err := writeFile(dir, "cpuset.mems", c.Mems); err != nil {
			return err
		}
	}
	return nil
}

// statsV2 reads a cgroup2 directory. A file that is missing (its
// controller is not enabled, or the kernel is older) reads as zero.
func statsV2(dir string) (*Stats, error) {
	st := &Stats{}
	var errs statErrs
	add := errs.add
	var err error
	st.MemoryUsage, err = readUint(dir, "memory.current")
	add(err)
	st.MemoryLimit, err = readUint(dir, "memory.max")
	add(err)
	st.MemoryMaxUsed, err = readUint(dir, "memory.peak") // Linux 5.19
	add(err)
	st.SwapUsage, err = readUint(dir, "memory.swap.current")
	add(err)
	ev, err := readKeyed(dir, "memory.events")
	add(err)
	st.OOMKills = ev["oom_kill"]
	// cpu.stat is there without the cpu controller too.
	cs, err := readKeyed(dir, "cpu.stat")
	add(err)
	st.CPUUsageNanos = cs["usage_usec"] * 1000
	st.CPUUserNanos = cs["user_usec"] * 1000
	st.CPUSysNanos = cs["system_usec"] * 1000
	st.PidsCurrent, err = readUint(dir, "pids.current")
	add(err)
	st.PidsLimit, err = readUint(dir, "pids.max")
	add(err)
	return st, errors.Join(errs...)
}
