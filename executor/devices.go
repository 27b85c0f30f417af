package executor

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor/cgroups"
)

func devNum(n int64) *int64 { return &n }

// defaultAllowedDevices are the device cgroup rules every container gets
// after its spec's own, the set runc adds: mknod of any node, and access to
// the nodes of the minimal /dev, the console and the ptys. Without them the
// deny-all rule that every engine puts first leaves a container unable to
// open /dev/null.
var defaultAllowedDevices = []specs.LinuxDeviceCgroup{
	{Allow: true, Type: "c", Access: "m"},
	{Allow: true, Type: "b", Access: "m"},
	{Allow: true, Type: "c", Major: devNum(1), Minor: devNum(3), Access: "rwm"},    // null
	{Allow: true, Type: "c", Major: devNum(1), Minor: devNum(8), Access: "rwm"},    // random
	{Allow: true, Type: "c", Major: devNum(1), Minor: devNum(7), Access: "rwm"},    // full
	{Allow: true, Type: "c", Major: devNum(5), Minor: devNum(0), Access: "rwm"},    // tty
	{Allow: true, Type: "c", Major: devNum(1), Minor: devNum(5), Access: "rwm"},    // zero
	{Allow: true, Type: "c", Major: devNum(1), Minor: devNum(9), Access: "rwm"},    // urandom
	{Allow: true, Type: "c", Major: devNum(5), Minor: devNum(1), Access: "rwm"},    // console
	{Allow: true, Type: "c", Major: devNum(136), Access: "rwm"},                    // pts/*
	{Allow: true, Type: "c", Major: devNum(5), Minor: devNum(2), Access: "rwm"},    // ptmx
	{Allow: true, Type: "c", Major: devNum(10), Minor: devNum(200), Access: "rwm"}, // net/tun
}

// cgroupResources returns the resources to give a container's cgroup: res
// (the spec's linux.resources, or an update of them) with the default
// allowed devices appended to its device rules, as runc appends them. The
// spec's own rules come first, applied as written and in order (see the
// cgroups package): device access is therefore always restricted, and a
// spec that lists no device rules gets the defaults alone. Nothing is
// added for the nodes of linux.devices: as with runc, a node the spec
// creates is usable only where linux.resources.devices allows it (a
// deny-all rule keeps /dev/kmsg closed though the spec makes the node,
// and a fifo, type "p", is no device to the cgroup). res is not modified.
func cgroupResources(res *specs.LinuxResources) *specs.LinuxResources {
	var out specs.LinuxResources
	if res != nil {
		out = *res
	}
	out.Devices = append(append([]specs.LinuxDeviceCgroup{}, out.Devices...), defaultAllowedDevices...)
	return &out
}

// Update changes the resources of a live container's cgroup in place.
// Device rules in res replace the container's, completed as at create (so
// an update never takes /dev/null away); an update without device rules
// (`runtime update --memory ...`) leaves them as they are.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	st, err := r.State(ctx, id)
	if err != nil {
		return err
	}
	if st.Status == StatusStopped {
		return fmt.Errorf("update %s: %w", id, ErrNotRunning)
	}
	if what := cgroups.Unsupported(res); what != "" {
		return fmt.Errorf("update %s: %s cannot be updated (not supported): leave it out", id, what)
	}
	m, err := r.cgroupOf(st)
	if err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	if m == nil {
		return fmt.Errorf("update %s: the container has no cgroup", id)
	}
	upd := res
	if res != nil && len(res.Devices) > 0 {
		upd = cgroupResources(res)
	}
	if upd == nil {
		upd = &specs.LinuxResources{}
	}
	if err := m.Set(ctx, upd); err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	return nil
}
