//go:build linux

package rootfs

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func (m *mounter) mountCgroup(sm specs.Mount, dest string, mo mountOptions) error {
	return m.mountFs("cgroup2", "cgroup", dest, mo)
}
