//go:build linux

package rootfs

import (
	"errors"
	"fmt"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/proc"
)

// hostCgroupRoot is where the host's cgroup hierarchies are mounted.
const hostCgroupRoot = "/sys/fs/cgroup"

// mountCgroup mounts the cgroup filesystem(s) at dest (normally
// /sys/fs/cgroup), following runc:
//
//   - unified (cgroup v2) host, or a mount of type "cgroup2": a cgroup2
//     mount. In a cgroup namespace the kernel shows the namespace's root
//     (the container's own cgroup) as the root. Without one the whole
//     hierarchy is visible; when the kernel refuses the mount (EPERM,
//     EBUSY) the container's own cgroup directory is bound instead.
//   - cgroup v1 or hybrid host: a tmpfs (mode 755) at dest and, for each
//     hierarchy the host mounts under /sys/fs/cgroup and this process is
//     in, a directory of the same name holding either a new mount of that
//     hierarchy (in a cgroup namespace: the kernel roots it at the
//     namespace's cgroup) or a bind of this process's cgroup directory
//     from the host's mount. Co-mounted hierarchies ("cpu,cpuacct") get
//     one symlink per controller. The mount's flags apply to every
//     hierarchy; "ro" makes the tmpfs read-only too, after it is filled.
//
// This process must already be in the container's cgroup (and, for a new
// cgroup namespace, have unshared it) when the mount is made: at the
// latest in SetupWith's beforeCgroup.
func (m *mounter) mountCgroup(sm specs.Mount, dest string, mo mountOptions) error {
	cgroupns := hasNamespace(m.linux, specs.CgroupNamespace)
	sfs, err := statfs(hostCgroupRoot)
	if err != nil {
		return err
	}
	if sfs.Type == unix.CGROUP2_SUPER_MAGIC || sm.Type == "cgroup2" {
		err := m.mountFs("cgroup2", "cgroup2", dest, mo)
		if cgroupns || !(errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY)) {
			return err
		}
		own, err := m.ownCgroups()
		if err != nil {
			return err
		}
		p, ok := own[""]
		if !ok {
			return errors.New("this process is in no cgroup2 cgroup")
		}
		return m.bindCgroup(path.Join(hostCgroupRoot, p), dest, mo)
	}
	return m.mountCgroupV1(dest, mo, cgroupns)
}

// ownCgroups returns the cgroups of the container's init: this process's,
// or Options.Cgroups'.
func (m *mounter) ownCgroups() (map[string]string, error) {
	if m.cgroups != nil {
		return m.cgroups()
	}
	return proc.Cgroups(0)
}

func hasNamespace(l *specs.Linux, t specs.LinuxNamespaceType) bool {
	for _, ns := range l.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

func (m *mounter) mountCgroupV1(dest string, mo mountOptions, cgroupns bool) error {
	attrs := mo.attrSet | mo.recSet
	tgt, err := m.target(dest, createDir, true)
	if err != nil {
		return err
	}
	defer tgt.fd.Close()
	tmpfs, err := newMount("tmpfs", "tmpfs", mountOptions{data: []string{"mode=755"}}, attrs&^unix.MOUNT_ATTR_RDONLY, tgt)
	if err != nil {
		return err
	}
	defer tmpfs.Close()

	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	own, err := m.ownCgroups()
	if err != nil {
		return err
	}
	for _, h := range hs {
		p, ok := own[h.key]
		if !ok {
			continue // a hierarchy this process is not in (or not mounted)
		}
		sub := path.Join(dest, h.name)
		if cgroupns {
			fstype, data := "cgroup", h.controllers
			if h.key == "" {
				fstype, data = "cgroup2", nil
			}
			if err := m.mountFs(fstype, fstype, sub, mountOptions{attrSet: attrs, data: data}); err != nil {
				if fstype == "cgroup" && errors.Is(err, unix.EPERM) && inUserNamespace() {
					return fmt.Errorf("hierarchy %s: the kernel does not mount cgroup v1 hierarchies in a user namespace; with a user namespace on a cgroup v1 or hybrid host, leave the cgroup namespace out (the container's own cgroup directories are then bound): %w", h.name, err)
				}
				return fmt.Errorf("hierarchy %s: %w", h.name, err)
			}
		} else {
			rel, ok := strings.CutPrefix(p, h.root)
			if !ok && h.root != "/" {
				return fmt.Errorf("hierarchy %s: cgroup %s is not under the mount's root %s", h.name, p, h.root)
			}
			if h.root == "/" {
				rel = p
			}
			if err := m.bindCgroup(path.Join(h.mountpoint, rel), sub, mountOptions{attrSet: attrs}); err != nil {
				return fmt.Errorf("hierarchy %s: %w", h.name, err)
			}
		}
		if strings.Contains(h.name, ",") {
			for _, c := range strings.Split(h.name, ",") {
				if err := unix.Symlinkat(h.name, int(tmpfs.Fd()), c); err != nil && !errors.Is(err, unix.EEXIST) {
					return sysErr("symlink "+path.Join(dest, c), err)
				}
			}
		}
	}
	if attrs&unix.MOUNT_ATTR_RDONLY != 0 {
		return setAttr(tmpfs, "", unix.MOUNT_ATTR_RDONLY, 0, false)
	}
	return nil
}

// bindCgroup binds a host cgroup directory (host path, trusted) onto dest
// inside the rootfs with the mount's flags.
func (m *mounter) bindCgroup(hostDir, dest string, mo mountOptions) error {
	mo.bind, mo.recursive = true, false
	mo.data = nil
	return m.bindOne(specs.Mount{Source: hostDir, Destination: dest, Type: "bind"}, dest, mo)
}

// cgroupHierarchy is one cgroup mount of the host under /sys/fs/cgroup.
type cgroupHierarchy struct {
	name        string   // base name of the mount point: "cpu,cpuacct", "unified"
	key         string   // the /proc/self/cgroup controller field ("" for cgroup2)
	controllers []string // the super options naming the hierarchy
	mountpoint  string
	root        string
}

// Super options of a v1 cgroup mount that do not name the hierarchy.
var cgroupGenericOptions = map[string]bool{
	"rw": true, "ro": true, "xattr": true, "noprefix": true, "clone_children": true,
	"cpuset_v2_mode": true, "favordynmods": true, "nsdelegate": true,
	"memory_localevents": true, "memory_recursiveprot": true,
}

func cgroupHierarchies() ([]cgroupHierarchy, error) {
	ms, err := proc.Mounts(func(m *proc.Mount) bool {
		return (m.FSType == "cgroup" || m.FSType == "cgroup2") && path.Dir(m.Mountpoint) == hostCgroupRoot
	})
	if err != nil {
		return nil, err
	}
	var hs []cgroupHierarchy
	seen := map[string]bool{}
	for _, mi := range ms {
		h := cgroupHierarchy{name: path.Base(mi.Mountpoint), mountpoint: mi.Mountpoint, root: mi.Root}
		if mi.FSType == "cgroup" {
			for _, o := range strings.Split(mi.VFSOptions, ",") {
				if !cgroupGenericOptions[o] && !strings.HasPrefix(o, "release_agent=") {
					h.controllers = append(h.controllers, o)
				}
			}
			h.key = strings.Join(h.controllers, ",")
		}
		if seen[h.name] {
			continue
		}
		seen[h.name] = true
		hs = append(hs, h)
	}
	return hs, nil
}
