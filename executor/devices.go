package executor

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
// (the spec's linux.resources, or an update of them) with the device rules
// completed by an allow rule for each of the spec's linux.devices and then
// the default allowed devices. Device access is therefore always
// restricted, as with runc: a spec that lists no device rules gets the
// defaults alone. res is not modified.
func cgroupResources(spec *specs.Spec, res *specs.LinuxResources) *specs.LinuxResources {
	var out specs.LinuxResources
	if res != nil {
		out = *res
	}
	rules := append([]specs.LinuxDeviceCgroup{}, out.Devices...)
	if spec != nil && spec.Linux != nil {
		for _, d := range spec.Linux.Devices {
			rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: devNum(d.Major), Minor: devNum(d.Minor), Access: "rwm"})
		}
	}
	out.Devices = append(rules, defaultAllowedDevices...)
	return &out
}

// Update changes the resources of a live container's cgroup in place, with
// the same completion of device rules as at create (so an update never takes
// /dev/null away).
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	st, err := r.State(ctx, id)
	if err != nil {
		return err
	}
	if st.Status == StatusStopped {
		return fmt.Errorf("update %s: %w", id, ErrNotRunning)
	}
	m, err := r.cgroupOf(st)
	if err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	if m == nil {
		return fmt.Errorf("update %s: the container has no cgroup", id)
	}
	spec, err := LoadSpec(st.Bundle)
	if err != nil {
		// The bundle may be gone (a CLI user removed it); the spec's
		// extra device nodes are then not re-allowed, the defaults are.
		spec = nil
	}
	if err := m.Set(ctx, cgroupResources(spec, res)); err != nil {
		return fmt.Errorf("update %s: %w", id, err)
	}
	return nil
}
