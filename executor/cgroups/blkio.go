package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hasBlockIO says whether b asks for anything that setBlockIOV1/V2 write.
func hasBlockIO(b *specs.LinuxBlockIO) bool {
	return b != nil && (deref(b.Weight) != 0 || len(b.ThrottleReadBpsDevice) > 0 || len(b.ThrottleWriteBpsDevice) > 0 ||
		len(b.ThrottleReadIOPSDevice) > 0 || len(b.ThrottleWriteIOPSDevice) > 0)
}

// unsupportedBlockIO names the part of b that is not applied (leaf weight,
// per-device weights), "" when there is none: refused, not dropped.
func unsupportedBlockIO(b *specs.LinuxBlockIO) string {
	switch {
	case b == nil:
		return ""
	case deref(b.LeafWeight) != 0:
		return "linux.resources.blockIO.leafWeight"
	case len(b.WeightDevice) > 0:
		return "linux.resources.blockIO.weightDevice"
	}
	return ""
}

// weightFile is the first of names that exists in dir. The weight files
// come with the I/O scheduler: none of them without CFQ or BFQ.
func weightFile(dir string, names ...string) (string, error) {
	for _, n := range names {
		if exists(filepath.Join(dir, n)) {
			return n, nil
		}
	}
	return "", fmt.Errorf("blkio weight: %s has none of %s (the kernel's I/O schedulers in use have no weights: BFQ or CFQ is needed): %w",
		dir, strings.Join(names, ", "), os.ErrNotExist)
}

// setBlockIOV1 writes the weight (blkio.weight, else blkio.bfq.weight) and
// the throttles, one line per device, as runc does.
func setBlockIOV1(dir string, b *specs.LinuxBlockIO) error {
	if w := deref(b.Weight); w != 0 {
		name, err := weightFile(dir, "blkio.weight", "blkio.bfq.weight")
		if err != nil {
			return err
		}
		if err := writeFile(dir, name, strconv.FormatUint(uint64(w), 10)); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		file string
		devs []specs.LinuxThrottleDevice
	}{
		{"blkio.throttle.read_bps_device", b.ThrottleReadBpsDevice},
		{"blkio.throttle.write_bps_device", b.ThrottleWriteBpsDevice},
		{"blkio.throttle.read_iops_device", b.ThrottleReadIOPSDevice},
		{"blkio.throttle.write_iops_device", b.ThrottleWriteIOPSDevice},
	} {
		for _, d := range t.devs {
			if err := writeFile(dir, t.file, fmt.Sprintf("%d:%d %d", d.Major, d.Minor, d.Rate)); err != nil {
				return err
			}
		}
	}
	return nil
}

// setBlockIOV2 writes the weight (io.bfq.weight as given, else io.weight
// converted from the v1 range 10-1000 to 1-10000, as runc does) and the
// throttles to io.max (0: "max", no limit).
func setBlockIOV2(dir string, b *specs.LinuxBlockIO) error {
	if w := deref(b.Weight); w != 0 {
		name, err := weightFile(dir, "io.bfq.weight", "io.weight")
		if err != nil {
			return err
		}
		v := uint64(w)
		if name == "io.weight" {
			v = BlkioWeightToIOWeight(v)
		}
		if err := writeFile(dir, name, strconv.FormatUint(v, 10)); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		key  string
		devs []specs.LinuxThrottleDevice
	}{
		{"rbps", b.ThrottleReadBpsDevice},
		{"wbps", b.ThrottleWriteBpsDevice},
		{"riops", b.ThrottleReadIOPSDevice},
		{"wiops", b.ThrottleWriteIOPSDevice},
	} {
		for _, d := range t.devs {
			v := "max"
			if d.Rate != 0 {
				v = strconv.FormatUint(d.Rate, 10)
			}
			if err := writeFile(dir, "io.max", fmt.Sprintf("%d:%d %s=%s", d.Major, d.Minor, t.key, v)); err != nil {
				return err
			}
		}
	}
	return nil
}

// BlkioWeightToIOWeight converts a v1 blkio weight (10-1000) to a v2
// io.weight (1-10000), runc's formula; 0 stays 0 (unset).
func BlkioWeightToIOWeight(w uint64) uint64 {
	if w == 0 {
		return 0
	}
	return 1 + (w-10)*9999/990
}

// setRealtimeV1 writes cpu.rt_period_us, then cpu.rt_runtime_us (runc's
// order). The files exist only with CONFIG_RT_GROUP_SCHED.
func setRealtimeV1(dir string, c *specs.LinuxCPU) error {
	if c.RealtimePeriod != nil && *c.RealtimePeriod != 0 {
		if err := writeFile(dir, "cpu.rt_period_us", strconv.FormatUint(*c.RealtimePeriod, 10)); err != nil {
			return fmt.Errorf("realtime period: %w", err)
		}
	}
	if c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0 {
		if err := writeFile(dir, "cpu.rt_runtime_us", strconv.FormatInt(*c.RealtimeRuntime, 10)); err != nil {
			return fmt.Errorf("realtime runtime (the parent cgroup's cpu.rt_runtime_us must leave room for it): %w", err)
		}
	}
	return nil
}

// hasRealtime says whether c asks for a realtime period or runtime.
func hasRealtime(c *specs.LinuxCPU) bool {
	return c != nil && (deref(c.RealtimePeriod) != 0 || deref(c.RealtimeRuntime) != 0)
}

// Unsupported names the first part of r that Set does not apply (it would
// be dropped), "" when there is none.
func Unsupported(r *specs.LinuxResources) string {
	switch {
	case r == nil:
		return ""
	case len(r.Rdma) > 0:
		return "linux.resources.rdma"
	}
	return unsupportedBlockIO(r.BlockIO)
}
