package cgroups

import (
	"errors"
	"fmt"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Pure conversions from the runtime spec to cgroup file values.

// SharesToWeight converts cgroup v1 cpu.shares to cgroup v2 cpu.weight with
// runc's linear formula, 1 + ((shares-2)*9999)/262142, which maps the v1
// range [2, 262144] onto the v2 range [1, 10000]. Shares outside it are
// clamped first, as the kernel clamps them on v1. 0 (unset) gives 0.
func SharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

// swapV2 converts the spec's memory+swap limit to a memory.swap.max value
// (swap alone), as runc's ConvertMemorySwapToCgroupV2Value does: -1 is
// "max"; unset swap with memory -1 is "max" too (both unlimited, as on v1);
// otherwise swap-memory. ok is false when nothing is to be written. Unlike
// runc, swap == memory writes "0" (no swap) rather than nothing.
func swapV2(swap, memory int64) (value string, ok bool, err error) {
	switch {
	case memory == -1 && swap == 0, swap == -1:
		return "max", true, nil
	case swap == 0:
		return "", false, nil
	case swap < 0:
		return "", false, fmt.Errorf("invalid memory+swap limit %d", swap)
	case memory == 0 || memory == -1:
		return "", false, errors.New("unable to set a swap limit without a memory limit")
	case memory < 0:
		return "", false, fmt.Errorf("invalid memory limit %d", memory)
	case swap < memory:
		return "", false, fmt.Errorf("memory+swap limit %d is below the memory limit %d", swap, memory)
	}
	return strconv.FormatInt(swap-memory, 10), true, nil
}

// limitValue is the value for a byte limit file: -1 (or any negative) is
// unlimited, "-1" on v1 and "max" on v2.
func limitValue(v int64, v2 bool) string {
	if v < 0 {
		if v2 {
			return "max"
		}
		return "-1"
	}
	return strconv.FormatInt(v, 10)
}

// cpuMaxV2 is the cpu.max value for a quota and period in microseconds:
// "quota period", "max period" for no quota (0 or negative), and the
// period left out when unset. ok is false when neither is set.
func cpuMaxV2(quota int64, period uint64) (string, bool) {
	if quota == 0 && period == 0 {
		return "", false
	}
	s := "max"
	if quota > 0 {
		s = strconv.FormatInt(quota, 10)
	}
	if period != 0 {
		s += " " + strconv.FormatUint(period, 10)
	}
	return s, true
}

// pidsValue is the pids.max value: the limit when positive, "max" for 0 or
// negative (no limit).
func pidsValue(limit int64) string {
	if limit > 0 {
		return strconv.FormatInt(limit, 10)
	}
	return "max"
}

// deviceRule formats one rule for devices.allow or devices.deny:
// "type major:minor access", with "a" for an empty type, "*" for a missing
// number and "rwm" for empty access; letters other than r, w and m are
// dropped as runc drops them (accessBits), and a b or c rule left with no
// access is no rule (file and rule empty).
func deviceRule(d specs.LinuxDeviceCgroup) (file, rule string, err error) {
	typ := d.Type
	switch typ {
	case "":
		typ = "a"
	case "a", "b", "c":
	default:
		return "", "", fmt.Errorf("invalid device type %q", d.Type)
	}
	num := func(p *int64) string {
		if p == nil || *p < 0 {
			return "*"
		}
		return strconv.FormatInt(*p, 10)
	}
	access := accessString(accessBits(d.Access))
	if access == "" && typ != "a" {
		return "", "", nil // no access runc knows (accessBits): nothing to write
	}
	if access == "" {
		access = "rwm" // type a resets the default, whatever the access
	}
	file = "devices.deny"
	if d.Allow {
		file = "devices.allow"
	}
	return file, typ + " " + num(d.Major) + ":" + num(d.Minor) + " " + access, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
