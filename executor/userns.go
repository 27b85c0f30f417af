package executor

import (
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/internal/rootfs"
	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/sys"
)

// User namespaces (linux.namespaces {type: user}, linux.uidMappings and
// linux.gidMappings), as runc runs them:
//
//   - the monitor clones the init with CLONE_NEWUSER and writes its
//     uid_map and gid_map (setgroups left "allow") before the init execs
//     this binary, which it does as root of the new namespace (so that it
//     keeps its capabilities there): Go's SysProcAttr UidMappings and
//     Credential (monitor.go);
//   - the creator, on a thread of its own that joins the init's mount
//     namespace, makes what root inside could not (rootfs.PrepareOutside):
//     the rootfs bound onto itself (idmapped with the container's mappings
//     when the spec's IDMapRootAnnotation says so) and every bind mount as
//     a detached tree, idmapped where mounts[].uidMappings or the idmap
//     option ask (OCI 1.1, runc 1.2: a mount's mappings say which ID on the
//     source filesystem (containerID) shows as which ID of the host
//     (hostID); without mappings, those of the container). It hands them
//     to the init with its stdio, with the state directory;
//   - the cgroup stays the host's: made and owned by the creator.
//
// Exec into a container with one: the process starts as the joiner
// (waiter/userns_amd64.S), which joins the user namespace and becomes its
// root before it execs the exec stage; setns(CLONE_NEWUSER) is refused to
// a multi-threaded process such as a Go one. Joining an existing user
// namespace (a path) at create is not supported, for that reason.

// IDMapRootAnnotation, set to "true" in a spec with a user namespace,
// shows the rootfs to the container through an idmapped mount with the
// container's mappings: a file owned by host UID 0 is root's inside, and
// what root inside creates is owned by host UID 0 on disk. Without it the
// rootfs is shown as it is (host-owned files belong to no one inside).
const IDMapRootAnnotation = "dev.reconciled.idmap-root"

// maxIDMapLines is the kernel's limit of lines in uid_map and gid_map.
const maxIDMapLines = 340

// validateUserns checks the user namespace fields of s against the plan.
func validateUserns(s *specs.Spec, p nsPlan) error {
	l := s.Linux
	if l == nil {
		l = &specs.Linux{}
	}
	newUser := p.has(unix.CLONE_NEWUSER)
	if !newUser {
		switch {
		case len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0:
			return errors.New("linux.uidMappings and linux.gidMappings need a user namespace: add {type: user} to linux.namespaces")
		case s.Annotations[IDMapRootAnnotation] == "true":
			return fmt.Errorf("annotation %s needs a user namespace: add {type: user} to linux.namespaces", IDMapRootAnnotation)
		}
		for i, m := range s.Mounts {
			if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 || slices.Contains(m.Options, "idmap") || slices.Contains(m.Options, "ridmap") {
				return fmt.Errorf("mounts[%d] (%s): an idmapped mount needs a user namespace in linux.namespaces: %w", i, m.Destination, ErrNotSupported)
			}
		}
		return nil
	}
	if !p.has(unix.CLONE_NEWNS) {
		return errors.New("linux.namespaces: a new user namespace needs a new mount namespace (the runtime prepares the root and the bind mounts in it)")
	}
	if len(l.UIDMappings) == 0 {
		return errors.New("linux.uidMappings is empty: a new user namespace needs linux.uidMappings and linux.gidMappings (for example [{containerID: 0, hostID: 100000, size: 65536}])")
	}
	if len(l.GIDMappings) == 0 {
		return errors.New("linux.gidMappings is empty: a new user namespace needs linux.uidMappings and linux.gidMappings (for example [{containerID: 0, hostID: 100000, size: 65536}])")
	}
	if err := checkIDMappings("linux.uidMappings", l.UIDMappings); err != nil {
		return err
	}
	if err := checkIDMappings("linux.gidMappings", l.GIDMappings); err != nil {
		return err
	}
	u := s.Process.User
	if _, ok := hostID(l.UIDMappings, u.UID); !ok {
		return fmt.Errorf("process.user.uid %d is not mapped by linux.uidMappings", u.UID)
	}
	if _, ok := hostID(l.GIDMappings, u.GID); !ok {
		return fmt.Errorf("process.user.gid %d is not mapped by linux.gidMappings", u.GID)
	}
	for _, g := range u.AdditionalGids {
		if _, ok := hostID(l.GIDMappings, g); !ok {
			return fmt.Errorf("process.user.additionalGids: %d is not mapped by linux.gidMappings", g)
		}
	}
	for i, m := range s.Mounts {
		if (len(m.UIDMappings) > 0) != (len(m.GIDMappings) > 0) {
			return fmt.Errorf("mounts[%d] (%s): uidMappings and gidMappings go together (OCI 1.1 idmapped mounts)", i, m.Destination)
		}
		if err := checkIDMappings(fmt.Sprintf("mounts[%d].uidMappings", i), m.UIDMappings); err != nil {
			return err
		}
		if err := checkIDMappings(fmt.Sprintf("mounts[%d].gidMappings", i), m.GIDMappings); err != nil {
			return err
		}
	}
	return nil
}

// checkIDMappings checks one mapping list: non-empty ranges within 32 bits,
// no two overlapping on either side, at most the kernel's number of lines.
func checkIDMappings(field string, ms []specs.LinuxIDMapping) error {
	if len(ms) > maxIDMapLines {
		return fmt.Errorf("%s: %d ranges, the kernel takes at most %d", field, len(ms), maxIDMapLines)
	}
	for i, m := range ms {
		if m.Size == 0 {
			return fmt.Errorf("%s[%d]: size is 0", field, i)
		}
		if uint64(m.ContainerID)+uint64(m.Size) > math.MaxUint32 || uint64(m.HostID)+uint64(m.Size) > math.MaxUint32 {
			return fmt.Errorf("%s[%d]: the range %d+%d or %d+%d passes 2^32-1", field, i, m.ContainerID, m.Size, m.HostID, m.Size)
		}
		for j, o := range ms[:i] {
			if overlap(m.ContainerID, o.ContainerID, m.Size, o.Size) || overlap(m.HostID, o.HostID, m.Size, o.Size) {
				return fmt.Errorf("%s[%d] overlaps %s[%d]", field, i, field, j)
			}
		}
	}
	return nil
}

func overlap(a, b, an, bn uint32) bool {
	return uint64(a) < uint64(b)+uint64(bn) && uint64(b) < uint64(a)+uint64(an)
}

// hostID is the host's ID for id inside, by the mappings ms.
func hostID(ms []specs.LinuxIDMapping, id uint32) (uint32, bool) {
	for _, m := range ms {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (id - m.ContainerID), true
		}
	}
	return 0, false
}

// sysIDMap converts mappings for syscall.SysProcAttr.
func sysIDMap(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// hostOwner is who owns, on the host, what the container's process user
// must be able to open (the exec fifo): its IDs mapped when the spec has a
// user namespace.
func hostOwner(s *specs.Spec, p nsPlan) (uid, gid int) {
	u := s.Process.User
	uid, gid = int(u.UID), int(u.GID)
	if p.has(unix.CLONE_NEWUSER) {
		if h, ok := hostID(s.Linux.UIDMappings, u.UID); ok {
			uid = int(h)
		}
		if h, ok := hostID(s.Linux.GIDMappings, u.GID); ok {
			gid = int(h)
		}
	}
	return uid, gid
}

// prepareOutside makes the rootfs and the bind mounts of an init in a user
// namespace (see the top of this file) and returns them, with the state
// directory, as the files to hand it (userns.go's order: state directory,
// then rootfs.Prepared.Files) and the bind mounts' indexes.
func (r *Runtime) prepareOutside(pid int, pidStart uint64, spec *specs.Spec, bundle, stateDir string) (_ []*os.File, _ []int, err error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	dir, err := os.OpenFile(stateDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open state directory: %w", err)
	}
	files = append(files, dir)
	nsPath := "/proc/" + strconv.Itoa(pid) + "/ns/"
	mntns, err := os.Open(nsPath + "mnt")
	if err != nil {
		return nil, nil, fmt.Errorf("container init: %w", err)
	}
	defer mntns.Close()
	userns, err := os.Open(nsPath + "user")
	if err != nil {
		return nil, nil, fmt.Errorf("container init: %w", err)
	}
	defer userns.Close()
	if !proc.Running(pid, pidStart) {
		return nil, nil, fmt.Errorf("container init %d: %w", pid, errGone)
	}
	// The user namespaces of mounts whose mappings are not the
	// container's are made here, before the thread below joins the
	// container's mount namespace (a child forked there would start in it).
	type mapped struct {
		uid, gid []specs.LinuxIDMapping
		f        *os.File
	}
	var own []mapped
	defer func() {
		for _, m := range own {
			m.f.Close()
		}
	}()
	same := func(a, b []specs.LinuxIDMapping) bool { return slices.Equal(a, b) }
	for _, m := range spec.Mounts {
		if len(m.UIDMappings) == 0 || (same(m.UIDMappings, spec.Linux.UIDMappings) && same(m.GIDMappings, spec.Linux.GIDMappings)) {
			continue
		}
		if slices.ContainsFunc(own, func(o mapped) bool { return same(o.uid, m.UIDMappings) && same(o.gid, m.GIDMappings) }) {
			continue
		}
		f, err := r.newUserns(m.UIDMappings, m.GIDMappings)
		if err != nil {
			return nil, nil, fmt.Errorf("mount %s: %w", m.Destination, err)
		}
		own = append(own, mapped{m.UIDMappings, m.GIDMappings, f})
	}
	mapper := func(uid, gid []specs.LinuxIDMapping) (*os.File, error) {
		if len(uid) == 0 || (same(uid, spec.Linux.UIDMappings) && same(gid, spec.Linux.GIDMappings)) {
			return userns, nil
		}
		for _, o := range own {
			if same(o.uid, uid) && same(o.gid, gid) {
				return o.f, nil
			}
		}
		return nil, errors.New("no user namespace for the mount's mappings")
	}
	type result struct {
		pre *rootfs.Prepared
		err error
	}
	var res result
	// On a thread that ends afterwards: it is in the container's mount
	// namespace.
	sys.OnOwnThread(func() {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			res.err = os.NewSyscallError("unshare(CLONE_FS)", err)
			return
		}
		if err := unix.Setns(int(mntns.Fd()), unix.CLONE_NEWNS); err != nil {
			res.err = fmt.Errorf("join the container's mount namespace: %w", os.NewSyscallError("setns", err))
			return
		}
		res.pre, res.err = rootfs.PrepareOutside(spec, bundle, spec.Annotations[IDMapRootAnnotation] == "true", mapper)
	})
	if res.err != nil {
		return nil, nil, res.err
	}
	pf, idx := res.pre.Files()
	files = append(files, pf...)
	return files, idx, nil
}

// UserNamespace returns a new user namespace with the mappings uid and
// gid (an open /proc/PID/ns/user), for idmapping what a caller mounts
// outside the runtime (an image's layers: layer.MountIDMapped).
func (r *Runtime) UserNamespace(uid, gid []specs.LinuxIDMapping) (*os.File, error) {
	return r.newUserns(uid, gid)
}

// newUserns returns a new user namespace (its /proc/PID/ns/user, open)
// with the mappings uid and gid, for idmapping a mount: a child of this
// binary (stageUserns) is cloned into it, holds it while it is opened and
// exits.
func (r *Runtime) newUserns(uid, gid []specs.LinuxIDMapping) (*os.File, error) {
	exe, err := r.selfExe()
	if err != nil {
		return nil, err
	}
	var pp [2]int
	if err := unix.Pipe2(pp[:], unix.O_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	pid, err := syscall.ForkExec("/proc/self/fd/"+strconv.Itoa(int(exe.Fd())), []string{"reconciled-userns"}, &syscall.ProcAttr{
		Env:   []string{stageEnv + "=" + stageUserns, "GOMAXPROCS=1"},
		Files: []uintptr{uintptr(pp[0])},
		Sys: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWUSER, UidMappings: sysIDMap(uid), GidMappings: sysIDMap(gid),
			GidMappingsEnableSetgroups: true,
		},
	})
	unix.Close(pp[0])
	if err != nil {
		unix.Close(pp[1])
		return nil, fmt.Errorf("make a user namespace for an idmapped mount: %w", err)
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/user")
	unix.Close(pp[1]) // the child reads EOF and exits
	var ws unix.WaitStatus
	retryEINTR(func() error { _, err := unix.Wait4(pid, &ws, 0, nil); return err })
	if err != nil {
		return nil, fmt.Errorf("make a user namespace for an idmapped mount: %w", err)
	}
	return f, nil
}

// runUsernsHolder is the stage newUserns starts: it waits for EOF on fd 0.
func runUsernsHolder() {
	var b [1]byte
	for {
		n, err := unix.Read(0, b[:])
		if err == unix.EINTR {
			continue
		}
		if n <= 0 {
			os.Exit(0)
		}
	}
}
