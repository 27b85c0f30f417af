package cgroups

import (
	"context"
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrNotExist is returned when a container's cgroup is not there.
var ErrNotExist = errors.New("cgroup does not exist")

// Driver creates cgroup managers. There are two: cgroupfs (writes the
// cgroup filesystem directly, v1, hybrid and unified v2) and systemd (each
// container a transient scope; added with the systemd integration).
type Driver interface {
	// Name is "cgroupfs" or "systemd".
	Name() string
	// Manager returns the manager of one container's cgroup. cgroupsPath is
	// the spec's linux.cgroupsPath (empty means the driver's default for id).
	// It creates nothing.
	Manager(id, cgroupsPath string) (Manager, error)
}

// Manager is one container's cgroup.
type Manager interface {
	// Apply creates the cgroup (in every hierarchy in use), sets the
	// resources and moves pid into it.
	Apply(ctx context.Context, pid int, r *specs.LinuxResources) error
	// Set changes the resources of a live cgroup in place.
	Set(ctx context.Context, r *specs.LinuxResources) error
	// Procs lists every PID in the cgroup (all hierarchies agree; the
	// driver reads the one that is authoritative).
	Procs(ctx context.Context) ([]int, error)
	// Stats reads current usage and limits.
	Stats(ctx context.Context) (*Stats, error)
	// Freeze freezes (true) or thaws (false) every process in the cgroup
	// and returns once the kernel reports the new state.
	Freeze(ctx context.Context, frozen bool) error
	// Destroy removes the cgroup from every hierarchy. The caller must have
	// killed its processes; Destroy of a missing cgroup is not an error.
	Destroy(ctx context.Context) error
	// Paths maps each hierarchy in use to the cgroup's directory on the
	// host ("" key for the unified v2 hierarchy, controller names for v1).
	Paths() map[string]string
}

// Stats is what the cgroup files say about a container. Zero means unknown
// or unlimited where the field says so.
type Stats struct {
	MemoryUsage   uint64 `json:"memoryUsageBytes"`
	MemoryLimit   uint64 `json:"memoryLimitBytes"` // 0: unlimited
	MemoryMaxUsed uint64 `json:"memoryMaxUsageBytes,omitempty"`
	SwapUsage     uint64 `json:"swapUsageBytes,omitempty"`
	OOMKills      uint64 `json:"oomKills"`
	CPUUsageNanos uint64 `json:"cpuUsageNanos"`
	CPUUserNanos  uint64 `json:"cpuUserNanos,omitempty"`
	CPUSysNanos   uint64 `json:"cpuSystemNanos,omitempty"`
	PidsCurrent   uint64 `json:"pidsCurrent"`
	PidsLimit     uint64 `json:"pidsLimit"` // 0: unlimited
}
