package cgroups

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Pure conversions for the systemd driver: unit names, slice paths and
// unit properties from the runtime spec.

const (
	// DefaultSlice is the slice that holds every container's scope when
	// the spec's linux.cgroupsPath is empty.
	DefaultSlice = "reconciled.slice"
	// DefaultScopePrefix prefixes the container id in the default scope
	// name: reconciled-<id>.scope.
	DefaultScopePrefix = "reconciled"
)

// infinity is systemd's "no limit" for the uint64 properties (MemoryLimit,
// MemoryMax, TasksMax, CPUQuotaPerSecUSec ...).
const infinity = uint64(math.MaxUint64)

// unitNames returns the slice and scope unit for a container: for an empty
// cgroupsPath DefaultSlice and "reconciled-<id>.scope"; otherwise runc's
// "slice:prefix:name", giving "prefix-name.scope" (or "name.scope" when
// prefix is empty) in slice (DefaultSlice when empty).
func unitNames(id, cgroupsPath string) (slice, scope string, err error) {
	if cgroupsPath == "" {
		if err := validUnitWord(id); err != nil {
			return "", "", fmt.Errorf("container id %q cannot name a systemd unit: %w", id, err)
		}
		return DefaultSlice, DefaultScopePrefix + "-" + id + ".scope", nil
	}
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 {
		return "", "", fmt.Errorf("linux.cgroupsPath %q: the systemd cgroup driver wants \"slice:prefix:name\" (e.g. \"reconciled.slice:reconciled:web\"), or leave it empty", cgroupsPath)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = DefaultSlice
	}
	if _, err := expandSlice(slice); err != nil {
		return "", "", fmt.Errorf("linux.cgroupsPath %q: %w", cgroupsPath, err)
	}
	if strings.HasSuffix(name, ".slice") {
		return "", "", fmt.Errorf("linux.cgroupsPath %q: a container goes in a scope, not in a slice (%s)", cgroupsPath, name)
	}
	name = strings.TrimSuffix(name, ".scope")
	if err := validUnitWord(name); err != nil {
		return "", "", fmt.Errorf("linux.cgroupsPath %q: name: %w", cgroupsPath, err)
	}
	if prefix != "" {
		if err := validUnitWord(prefix); err != nil {
			return "", "", fmt.Errorf("linux.cgroupsPath %q: prefix: %w", cgroupsPath, err)
		}
		name = prefix + "-" + name
	}
	return slice, name + ".scope", nil
}

// validUnitWord checks s for the characters a unit name allows (letters,
// digits, ":", "-", "_", ".", "\\"), without the "@" of templates.
func validUnitWord(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > 200 {
		return fmt.Errorf("%d characters; at most 200", len(s))
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == ':', r == '-', r == '_', r == '.', r == '\\':
		default:
			return fmt.Errorf("character %q is not allowed in a unit name (letters, digits, \":-_.\\\")", r)
		}
	}
	return nil
}

// expandSlice returns the cgroup path of a slice unit, as systemd builds
// it: "a-b.slice" is "/a.slice/a-b.slice", "-.slice" is "" (the root).
func expandSlice(slice string) (string, error) {
	const suffix = ".slice"
	if !strings.HasSuffix(slice, suffix) || len(slice) == len(suffix) || strings.Contains(slice, "/") {
		return "", fmt.Errorf("invalid slice name %q: want NAME.slice", slice)
	}
	if slice == "-.slice" {
		return "", nil
	}
	name := strings.TrimSuffix(slice, suffix)
	if err := validUnitWord(name); err != nil {
		return "", fmt.Errorf("invalid slice name %q: %w", slice, err)
	}
	if strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("invalid slice name %q: a '-' starts each level and may not start, end or double", slice)
	}
	var path, prefix strings.Builder
	for _, comp := range strings.Split(name, "-") {
		if prefix.Len() > 0 {
			prefix.WriteByte('-')
		}
		prefix.WriteString(comp)
		path.WriteString("/" + prefix.String() + suffix)
	}
	return path.String(), nil
}

// resourceProps maps r to unit properties: on v1 (legacy, hybrid)
// MemoryLimit, CPUShares, CPUQuotaPerSecUSec (+ CPUQuotaPeriodUSec),
// TasksMax; on v2 MemoryMax, MemorySwapMax, MemoryLow, CPUWeight,
// CPUQuotaPerSecUSec (+ period), TasksMax; on both DevicePolicy and
// DeviceAllow from the device rules (see deviceProps). Everything else in
// r (swap on v1, swappiness, cpusets, burst, unified) has no property here
// and is written to the scope's files by the driver.
func resourceProps(r *specs.LinuxResources, unified bool, procDevices func() (io.ReadCloser, error)) ([]sddbus.Property, error) {
	if r == nil {
		return nil, nil
	}
	var props []sddbus.Property
	add := func(name string, v any) {
		props = append(props, sddbus.Property{Name: name, Value: godbus.MakeVariant(v)})
	}
	bytes := func(v int64) uint64 {
		if v < 0 {
			return infinity
		}
		return uint64(v)
	}
	if mem := r.Memory; mem != nil {
		limit := deref(mem.Limit)
		if unified {
			if limit != 0 {
				add("MemoryMax", bytes(limit))
			}
			swap, ok, err := swapV2(deref(mem.Swap), limit)
			if err != nil {
				return nil, err
			}
			if ok {
				v := infinity
				if swap != "max" {
					v, _ = strconv.ParseUint(swap, 10, 64)
				}
				add("MemorySwapMax", v)
			}
			if res := deref(mem.Reservation); res != 0 {
				add("MemoryLow", bytes(res))
			}
		} else if limit != 0 {
			add("MemoryLimit", bytes(limit))
		}
	}
	if c := r.CPU; c != nil {
		if shares := deref(c.Shares); shares != 0 {
			if unified {
				add("CPUWeight", SharesToWeight(shares))
			} else {
				add("CPUShares", shares)
			}
		}
		if c.Quota != nil || c.Period != nil {
			period := deref(c.Period)
			if period != 0 {
				add("CPUQuotaPeriodUSec", period)
			} else {
				period = 100000 // the kernel's and systemd's default
			}
			if c.Quota != nil {
				quota := *c.Quota
				perSec := infinity
				if quota > 0 {
					// Rounded up: systemd writes perSec*period/1s back.
					perSec = (uint64(quota)*1000000 + period - 1) / period
				}
				add("CPUQuotaPerSecUSec", perSec)
			}
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		v := infinity
		if *r.Pids.Limit > 0 {
			v = uint64(*r.Pids.Limit)
		}
		add("TasksMax", v)
	}
	if len(r.Devices) > 0 {
		dp, err := deviceProps(r.Devices, procDevices)
		if err != nil {
			return nil, err
		}
		props = append(props, dp...)
	}
	return props, nil
}

// deviceAllow is one DeviceAllow= entry, D-Bus type (ss).
type deviceAllow struct {
	Path, Access string
}

// deviceProps turns the spec's ordered allow/deny device rules into
// DevicePolicy and DeviceAllow, which systemd enforces on both cgroup
// versions (the v1 devices controller, its own eBPF program on v2). The
// rules are computed as everywhere else (compileDeviceRules: replayed over
// "deny every device"): allow-all with no exception is DevicePolicy=auto
// with no entries; deny-all is DevicePolicy=strict with one entry per
// exception (/dev/char/M:m, /dev/block/M:m, or char-NAME/block-NAME from
// /proc/devices for a wildcard minor, char-* / block-* for a wildcard
// major). Allow-all with exceptions (a deny list) has no systemd
// equivalent and is an error, and so is a wildcard major with a given
// minor.
func deviceProps(rules []specs.LinuxDeviceCgroup, procDevices func() (io.ReadCloser, error)) ([]sddbus.Property, error) {
	f, err := compileDeviceRules(rules)
	if err != nil {
		return nil, err
	}
	if f.allowAll {
		if len(f.except) > 0 {
			e := f.except[0]
			return nil, fmt.Errorf("linux.resources.devices: denying %s %s while every other device is allowed cannot be expressed as a systemd DeviceAllow list; deny all devices first, then allow the ones wanted", e.deviceMatch, accessString(e.access))
		}
		return []sddbus.Property{
			{Name: "DevicePolicy", Value: godbus.MakeVariant("auto")},
			{Name: "DeviceAllow", Value: godbus.MakeVariant([]deviceAllow{})},
		}, nil
	}
	allow := []deviceAllow{}
	var groups map[string]string // "c136" -> "pts", read on first need
	for _, e := range f.except {
		kind := map[byte]string{'c': "char", 'b': "block"}[e.typ]
		var path string
		switch {
		case e.major < 0 && e.minor >= 0:
			return nil, fmt.Errorf("linux.resources.devices: allowing %s (any major, one minor) cannot be expressed as a systemd DeviceAllow entry; name the major", e.deviceMatch)
		case e.major < 0:
			path = kind + "-*"
		case e.minor < 0:
			if groups == nil {
				if groups, err = readProcDevices(procDevices); err != nil {
					return nil, fmt.Errorf("linux.resources.devices: allowing %s: %w", e.deviceMatch, err)
				}
			}
			name, ok := groups[string(e.typ)+strconv.FormatInt(e.major, 10)]
			if !ok {
				return nil, fmt.Errorf("linux.resources.devices: allowing %s: no device group in /proc/devices has major %d", e.deviceMatch, e.major)
			}
			path = kind + "-" + name
		default:
			path = fmt.Sprintf("/dev/%s/%d:%d", kind, e.major, e.minor)
		}
		allow = append(allow, deviceAllow{Path: path, Access: accessString(e.access)})
	}
	return []sddbus.Property{
		{Name: "DevicePolicy", Value: godbus.MakeVariant("strict")},
		{Name: "DeviceAllow", Value: godbus.MakeVariant(allow)},
	}, nil
}

// readProcDevices maps "c<major>" and "b<major>" to the device group names
// in /proc/devices.
func readProcDevices(open func() (io.ReadCloser, error)) (map[string]string, error) {
	if open == nil {
		open = func() (io.ReadCloser, error) { return os.Open("/proc/devices") }
	}
	f, err := open()
	if err != nil {
		return nil, fmt.Errorf("reading /proc/devices: %w", err)
	}
	defer f.Close()
	m := map[string]string{}
	kind := ""
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		switch line {
		case "Character devices:":
			kind = "c"
			continue
		case "Block devices:":
			kind = "b"
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || kind == "" {
			continue
		}
		if _, err := strconv.Atoi(f[0]); err == nil {
			if _, dup := m[kind+f[0]]; !dup {
				m[kind+f[0]] = f[1]
			}
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("reading /proc/devices: %w", err)
	}
	return m, nil
}
