package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// setV1 writes r to the v1 hierarchies, in runc's order: devices, memory,
// cpu (realtime after the CFS values), cpuset, pids, then blkio. A limit whose controller is not mounted is an error.
func (m *fsManager) setV1(r *specs.LinuxResources) error {
	if len(r.Unified) > 0 {
		// "invalid configuration" is runc's wording for this refusal.
		return errors.New("invalid configuration: linux.resources.unified needs cgroup v2 (this host is " + m.mode.String() + ")")
	}
	need := func(c string) (string, error) {
		if d := m.dirOf(c); d != "" {
			return d, nil
		}
		return "", fmt.Errorf("cgroup v1 controller %q is not mounted", c)
	}
	if len(r.Devices) > 0 {
		dir, err := need("devices")
		if err != nil {
			return err
		}
		if err := setDevicesV1(dir, r.Devices); err != nil {
			return err
		}
	}
	if r.Memory != nil && *r.Memory != (specs.LinuxMemory{}) {
		dir, err := need("memory")
		if err != nil {
			return err
		}
		if err := setMemoryV1(dir, r.Memory); err != nil {
			return err
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil || c.Quota != nil || c.Period != nil || c.Burst != nil {
			dir, err := need("cpu")
			if err != nil {
				return err
			}
			if err := setCPUV1(dir, c); err != nil {
				return err
			}
		}
		if hasRealtime(c) {
			dir, err := need("cpu")
			if err != nil {
				return err
			}
			if err := setRealtimeV1(dir, c); err != nil {
				return err
			}
		}
		if c.Cpus != "" || c.Mems != "" {
			dir, err := need("cpuset")
			if err != nil {
				return err
			}
			if err := setCpuset(dir, c); err != nil {
				return err
			}
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		dir, err := need("pids")
		if err != nil {
			return err
		}
		if err := writeFile(dir, "pids.max", pidsValue(*r.Pids.Limit)); err != nil {
			return err
		}
	}
	if hasBlockIO(r.BlockIO) {
		dir, err := need("blkio")
		if err != nil {
			return err
		}
		if err := setBlockIOV1(dir, r.BlockIO); err != nil {
			return err
		}
	}
	if len(r.HugepageLimits) > 0 {
		if _, _, err := hugetlbFiles(r.HugepageLimits, ""); err != nil {
			return err
		}
		dir, err := need("hugetlb")
		if err != nil {
			return fmt.Errorf("linux.resources.hugepageLimits: %w", err)
		}
		if err := setHugetlb(dir, r.HugepageLimits, "limit_in_bytes"); err != nil {
			return err
		}
	}
	if hasNetwork(r.Network) {
		if err := setNetworkV1(r.Network, need); err != nil {
			return err
		}
	}
	return nil
}

// setDevicesV1 denies everything, then writes each rule in order, as runc
// did before its device-rule emulator. Between the two a device in use
// may be refused for an instant; Set on a running container has that too.
// The rules are first checked as on v2 (compileDeviceRules): what the
// kernel would silently ignore (a hole in a wildcard) is refused here too.
func setDevicesV1(dir string, rules []specs.LinuxDeviceCgroup) error {
	if _, err := compileDeviceRules(rules); err != nil {
		return err
	}
	w := ruleWriter{dir: dir}
	defer w.close()
	if err := w.write("devices.deny", "a"); err != nil {
		return err
	}
	for _, d := range rules {
		file, rule, err := deviceRule(d)
		if err != nil {
			return err
		}
		if file == "" {
			continue
		}
		if err := w.write(file, rule); err != nil {
			return err
		}
	}
	return nil
}

// ruleWriter writes rules to the files of one cgroup directory, each file
// opened once: the kernel takes one rule per write(2) (devices.allow,
// devices.deny), and the open, a path walk in the cgroup filesystem, cost
// more than the write (runc's default list is 12 rules after the deny-all:
// 0.1 ms of every create on a 2-core VM).
type ruleWriter struct {
	dir string
	fds map[string]int
}

func (w *ruleWriter) write(name, rule string) error {
	path := filepath.Join(w.dir, name)
	fd, ok := w.fds[name]
	if !ok {
		var err error
		if fd, err = sys.OpenRetry(path, unix.O_WRONLY); err != nil {
			return fmt.Errorf("writing %q to %s: %w", rule, path, bare(err))
		}
		if w.fds == nil {
			w.fds = map[string]int{}
		}
		w.fds[name] = fd
	}
	if err := sys.WriteFd(fd, path, []byte(rule)); err != nil {
		return fmt.Errorf("writing %q to %s: %w", rule, path, bare(err))
	}
	return nil
}

func (w *ruleWriter) close() {
	for _, fd := range w.fds {
		unix.Close(fd)
	}
}

// setMemoryV1 writes memory.limit_in_bytes and memory.memsw.limit_in_bytes
// in the order the kernel accepts (memsw may never be below the limit):
// memsw first when it grows past the current limit or goes unlimited,
// else the limit first. Without swap accounting (no memsw file) a swap of
// -1 is dropped and any other swap limit is an error.
func setMemoryV1(dir string, mem *specs.LinuxMemory) error {
	limit, swap := deref(mem.Limit), deref(mem.Swap)
	const memsw = "memory.memsw.limit_in_bytes"
	hasSwap := exists(filepath.Join(dir, memsw))
	if limit == -1 && swap == 0 && hasSwap {
		swap = -1 // both unlimited
	}
	if swap != 0 && !hasSwap {
		if swap != -1 {
			return fmt.Errorf("setting memory+swap limit %d: %s: swap accounting is not enabled: %w", swap, filepath.Join(dir, memsw), os.ErrNotExist)
		}
		swap = 0
	}
	if limit > 0 && swap > 0 && swap < limit {
		return fmt.Errorf("memory+swap limit %d is below the memory limit %d", swap, limit)
	}
	switch {
	case limit != 0 && swap != 0:
		cur, err := readUint(dir, "memory.limit_in_bytes")
		if err != nil {
			return err
		}
		if swap == -1 || cur < uint64(swap) {
			if err := writeFile(dir, memsw, limitValue(swap, false)); err != nil {
				return err
			}
			if err := writeFile(dir, "memory.limit_in_bytes", limitValue(limit, false)); err != nil {
				return err
			}
		} else {
			if err := writeFile(dir, "memory.limit_in_bytes", limitValue(limit, false)); err != nil {
				return err
			}
			if err := writeFile(dir, memsw, limitValue(swap, false)); err != nil {
				return err
			}
		}
	case limit != 0:
		if err := writeFile(dir, "memory.limit_in_bytes", limitValue(limit, false)); err != nil {
			return err
		}
	case swap != 0:
		if err := writeFile(dir, memsw, limitValue(swap, false)); err != nil {
			return err
		}
	}
	if mem.Reservation != nil {
		if err := writeFile(dir, "memory.soft_limit_in_bytes", limitValue(*mem.Reservation, false)); err != nil {
			return err
		}
	}
	if mem.Swappiness != nil {
		if err := writeFile(dir, "memory.swappiness", strconv.FormatUint(*mem.Swappiness, 10)); err != nil {
			return err
		}
	}
	if deref(mem.DisableOOMKiller) {
		if err := writeFile(dir, "memory.oom_control", "1"); err != nil {
			return err
		}
	}
	// The TCP buffer limit, as crun sets it (v1 only: cgroup v2 counts
	// socket memory in memory.max). (memory.kernel is not set: kernel
	// memory limits are deprecated since Linux 5.4, and on current
	// kernels the write is accepted and has no effect.)
	if mem.KernelTCP != nil && *mem.KernelTCP != 0 {
		if err := writeFile(dir, "memory.kmem.tcp.limit_in_bytes", limitValue(*mem.KernelTCP, false)); err != nil {
			return fmt.Errorf("linux.resources.memory.kernelTCP: %w", err)
		}
	}
	return nil
}

// setCPUV1 writes cpu.shares, then the period before the quota (and the
// quota first when the kernel refuses the period against the old quota),
// then the burst.
func setCPUV1(dir string, c *specs.LinuxCPU) error {
	if c.Shares != nil && *c.Shares != 0 {
		if err := writeFile(dir, "cpu.shares", strconv.FormatUint(*c.Shares, 10)); err != nil {
			return err
		}
	}
	period, quota := deref(c.Period), deref(c.Quota)
	quotaDone := false
	if period != 0 {
		err := writeFile(dir, "cpu.cfs_period_us", strconv.FormatUint(period, 10))
		if err != nil && quota != 0 && errors.Is(err, syscall.EINVAL) {
			if qerr := writeFile(dir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); qerr != nil {
				return errors.Join(err, qerr)
			}
			quotaDone = true
			err = writeFile(dir, "cpu.cfs_period_us", strconv.FormatUint(period, 10))
		}
		if err != nil {
			return err
		}
	}
	if quota != 0 && !quotaDone {
		if quota < 0 {
			quota = -1
		}
		if err := writeFile(dir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
			return err
		}
	}
	if c.Burst != nil {
		if err := writeFile(dir, "cpu.cfs_burst_us", strconv.FormatUint(*c.Burst, 10)); err != nil {
			return err
		}
	}
	return nil
}

// v1Unlimited: v1 byte limits read back as a page-aligned MaxInt64 (about
// 2^63) when unlimited; anything above 2^62 is taken as no limit.
const v1Unlimited = 1 << 62

func (m *fsManager) statsV1() (*Stats, error) {
	st := &Stats{}
	var errs statErrs
	add := errs.add
	var err error
	if dir := m.dirOf("memory"); dir != "" {
		st.MemoryUsage, err = readUint(dir, "memory.usage_in_bytes")
		add(err)
		st.MemoryMaxUsed, err = readUint(dir, "memory.max_usage_in_bytes")
		add(err)
		st.MemoryLimit, err = readUint(dir, "memory.limit_in_bytes")
		add(err)
		if st.MemoryLimit > v1Unlimited {
			st.MemoryLimit = 0
		}
		if sw, err := readUint(dir, "memory.memsw.usage_in_bytes"); err == nil {
			if sw > st.MemoryUsage {
				st.SwapUsage = sw - st.MemoryUsage
			}
		} else {
			add(err)
		}
		oc, err := readKeyed(dir, "memory.oom_control")
		add(err)
		st.OOMKills = oc["oom_kill"]
	}
	if dir := m.dirOf("cpuacct"); dir != "" {
		st.CPUUsageNanos, err = readUint(dir, "cpuacct.usage")
		add(err)
		u, uerr := readUint(dir, "cpuacct.usage_user")
		s, serr := readUint(dir, "cpuacct.usage_sys")
		if uerr == nil && serr == nil {
			st.CPUUserNanos, st.CPUSysNanos = u, s
		} else {
			// Kernels before 4.7: cpuacct.stat, in USER_HZ (100) ticks.
			cs, err := readKeyed(dir, "cpuacct.stat")
			add(err)
			st.CPUUserNanos, st.CPUSysNanos = cs["user"]*1e7, cs["system"]*1e7
		}
	}
	if dir := m.dirOf("pids"); dir != "" {
		st.PidsCurrent, err = readUint(dir, "pids.current")
		add(err)
		st.PidsLimit, err = readUint(dir, "pids.max")
		add(err)
	}
	return st, errors.Join(errs...)
}
