//go:build linux

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// Mounts added when the spec has none at these destinations and does not
// bind-mount /dev (runc's defaults from `runc spec`).
var (
	defaultDevMount = specs.Mount{
		Destination: "/dev", Type: "tmpfs", Source: "tmpfs",
		Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"},
	}
	defaultDevptsMount = specs.Mount{
		Destination: "/dev/pts", Type: "devpts", Source: "devpts",
		Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"},
	}
	defaultShmMount = specs.Mount{
		Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
		Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"},
	}
)

// mounter carries the state of one Prepare.
type mounter struct {
	spec   *specs.Spec
	linux  *specs.Linux
	bundle string
	root   *os.File // O_PATH fd of the rootfs mount, before pivot_root

	setupDev bool     // /dev is not bound from elsewhere: create nodes
	devMnt   *os.File // the /dev mount when setupDev
	devRO    bool     // the spec wants /dev read-only once populated

	// beforeCgroup, when set, runs once before the first cgroup mount.
	beforeCgroup func() error
	// procContext, when set, opens the filesystem context of a procfs
	// (Options.ProcContext).
	procContext func() (int, error)
	// cgroups, when set, gives the init's cgroups (Options.Cgroups).
	cgroups func() (map[string]string, error)

	// binds are the spec's bind mounts made by the runtime outside the
	// container's user namespace (Prepared.Binds), by index in
	// spec.Mounts; the one being mounted is cur.
	binds map[int]*os.File
	cur   *os.File
}

func cleanDest(d string) string { return filepath.Clean("/" + d) }

// mounts returns the spec's mounts with the /dev defaults added, and for
// each its index in spec.Mounts (-1 for a default).
func (m *mounter) mounts() ([]specs.Mount, []int) {
	has := map[string]bool{}
	bindDev := false
	for _, sm := range m.spec.Mounts {
		d := cleanDest(sm.Destination)
		has[d] = true
		if d == "/dev" {
			if mo, err := parseOptions(sm.Type, sm.Options); err == nil && mo.bind {
				bindDev = true
			}
		}
	}
	m.setupDev = !bindDev
	var out []specs.Mount
	var idx []int
	if !bindDev && !has["/dev"] {
		out, idx = append(out, defaultDevMount), append(idx, -1)
	}
	for i, sm := range m.spec.Mounts {
		out, idx = append(out, sm), append(idx, i)
	}
	if !bindDev && !has["/dev/pts"] {
		out, idx = append(out, defaultDevptsMount), append(idx, -1)
	}
	if !bindDev && !has["/dev/shm"] {
		out, idx = append(out, defaultShmMount), append(idx, -1)
	}
	return out, idx
}

func (m *mounter) mountAll() error {
	all, idx := m.mounts()
	for i, sm := range all {
		m.cur = nil
		if idx[i] >= 0 {
			m.cur = m.binds[idx[i]]
		}
		if err := m.mountOne(sm); err != nil {
			return fmt.Errorf("mount %s (type %q, source %q): %w", sm.Destination, sm.Type, sm.Source, err)
		}
	}
	return nil
}

func (m *mounter) mountOne(sm specs.Mount) error {
	dest := cleanDest(sm.Destination)
	if dest == "/" {
		return fmt.Errorf("%w: cannot mount over /", ErrInvalidMount)
	}
	mo, err := parseOptions(sm.Type, sm.Options)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidMount, err)
	}
	if (len(sm.UIDMappings) > 0 || len(sm.GIDMappings) > 0 || mo.idmap) && m.cur == nil {
		// Idmapping needs privilege over the filesystem: the runtime
		// does it outside the container (PrepareOutside).
		return fmt.Errorf("%w: an idmapped mount (uidMappings, gidMappings, idmap) needs a user namespace in linux.namespaces", ErrInvalidMount)
	}
	if err := m.checkProcDest(dest, sm, mo); err != nil {
		return err
	}
	switch {
	case mo.bind:
		return m.bindOne(sm, dest, mo)
	case sm.Type == "cgroup" || sm.Type == "cgroup2":
		if f := m.beforeCgroup; f != nil {
			m.beforeCgroup = nil
			if err := f(); err != nil {
				return err
			}
		}
		return m.mountCgroup(sm, dest, mo)
	default:
		return m.mountFs(sm.Type, sm.Source, dest, mo)
	}
}

// Files of /proc that may be bind-mounted over their own kind (lxcfs).
var procBindAllowed = map[string]bool{
	"/proc/cpuinfo": true, "/proc/diskstats": true, "/proc/meminfo": true,
	"/proc/stat": true, "/proc/swaps": true, "/proc/uptime": true,
	"/proc/loadavg": true, "/proc/slabinfo": true, "/proc/net/dev": true,
	"/proc/sys/kernel/ns_last_pid": true,
}

// checkProcDest restricts mounts on /proc and below, as runc does: only a
// procfs goes on /proc, and a procfs file is bound below /proc only from
// the short list that lxcfs-style setups need.
func (m *mounter) checkProcDest(dest string, sm specs.Mount, mo mountOptions) error {
	if dest != "/proc" && !strings.HasPrefix(dest, "/proc/") {
		return nil
	}
	if !mo.bind {
		if dest == "/proc" && sm.Type != "proc" {
			return fmt.Errorf("%w: only a procfs may be mounted on /proc, not %q", ErrInvalidMount, sm.Type)
		}
		return nil
	}
	var sfs unix.Statfs_t
	var err error
	if m.cur != nil {
		sfs, err = fstatfs(int(m.cur.Fd()))
	} else {
		sfs, err = statfs(m.source(sm))
	}
	if err != nil {
		return err
	}
	if sfs.Type == unix.PROC_SUPER_MAGIC && !procBindAllowed[filepath.Clean(sm.Source)] && dest != "/proc" {
		return fmt.Errorf("%w: bind of procfs %s onto %s is not allowed", ErrInvalidMount, sm.Source, dest)
	}
	if dest == "/proc" && sfs.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("%w: only a procfs may be mounted on /proc", ErrInvalidMount)
	}
	return nil
}

// source returns a bind mount's source as a host path: relative sources
// are relative to the bundle.
func (m *mounter) source(sm specs.Mount) string {
	if filepath.IsAbs(sm.Source) {
		return sm.Source
	}
	return filepath.Join(m.bundle, sm.Source)
}

// target resolves dest inside the rootfs, creating what is missing (kind
// for the final component), and checks that it is a directory (wantDir) or
// not.
func (m *mounter) target(dest string, kind createKind, wantDir bool) (target, error) {
	mode := uint32(0o755)
	if kind == createFile {
		mode = 0o644
	}
	f, err := openOrCreate(m.root, dest, kind, mode)
	if err != nil {
		return target{}, err
	}
	st, err := sys.Fstat(int(f.Fd()))
	if err != nil {
		f.Close()
		return target{}, err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir != wantDir {
		f.Close()
		want := "a directory"
		if !wantDir {
			want = "not a directory"
		}
		return target{}, fmt.Errorf("%s is a %s, want %s: %w", dest, sys.TypeName(st.Mode), want, ErrUnexpectedType)
	}
	return target{root: m.root, path: dest, fd: f}, nil
}

func (m *mounter) mountFs(fstype, source, dest string, mo mountOptions) error {
	tgt, err := m.target(dest, createDir, true)
	if err != nil {
		return err
	}
	defer tgt.fd.Close()
	if fstype == "proc" || fstype == "sysfs" {
		if err := checkNoSymlinks(tgt); err != nil {
			return err
		}
	}
	attrs := mo.attrSet | mo.recSet
	isDev := dest == "/dev"
	if isDev && m.setupDev && attrs&unix.MOUNT_ATTR_RDONLY != 0 {
		// Populate it first; made read-only at the end of Prepare.
		m.devRO = true
		attrs &^= unix.MOUNT_ATTR_RDONLY
	}
	if source == "" {
		source = fstype
	}
	var mnt *os.File
	if fstype == "proc" && m.procContext != nil {
		mnt, err = m.procMount(source, mo, attrs, tgt)
	} else {
		mnt, err = newMount(fstype, source, mo, attrs, tgt)
	}
	if err != nil && fstype == "sysfs" && errors.Is(err, unix.EPERM) && inUserNamespace() {
		// As runc: a sysfs mount needs a network namespace owned by the
		// container's user namespace; without one the host's /sys is
		// bound (with the mount's flags, all the way down).
		mnt, err = bindHostSys(tgt, attrs)
	}
	if err != nil {
		return err
	}
	if err := applyPropagation(mnt, mo.propagation); err != nil {
		mnt.Close()
		return err
	}
	if fstype == "proc" {
		if err := checkProcfs(mnt); err != nil {
			mnt.Close()
			return err
		}
	}
	if isDev && m.setupDev {
		if m.devMnt != nil {
			m.devMnt.Close()
		}
		m.devMnt = mnt
		return nil
	}
	return mnt.Close()
}

// procMount mounts a procfs from the context procContext gives.
func (m *mounter) procMount(source string, mo mountOptions, attrs uint64, tgt target) (*os.File, error) {
	fsfd, err := m.procContext()
	if err != nil {
		return nil, fmt.Errorf("the procfs context: %w", err)
	}
	defer sys.CloseFd(fsfd)
	return fsmount(fsfd, "proc", source, mo, attrs, tgt)
}

// checkNoSymlinks refuses a target reached through a symlink. procfs and
// sysfs must be where the container and the runtime look for them: with
// /proc a symlink, a later mount could cover the procfs at the link's
// target and redirect the runtime's writes to /proc (CVE-2025-52881).
func checkNoSymlinks(t target) error {
	f, err := openNoSymlinks(t.root, t.path)
	if errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("%w: %s goes through a symlink", ErrInvalidMount, t.path)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	a, err := sys.Fstat(int(f.Fd()))
	if err != nil {
		return err
	}
	b, err := sys.Fstat(int(t.fd.Fd()))
	if err != nil {
		return err
	}
	if a.Dev != b.Dev || a.Ino != b.Ino {
		return fmt.Errorf("%w: %s changed while it was being resolved", ErrInvalidMount, t.path)
	}
	return nil
}

func checkProcfs(f *os.File) error {
	sfs, err := fstatfs(int(f.Fd()))
	if err != nil {
		return err
	}
	if sfs.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("%s: %w", f.Name(), ErrNotProcfs)
	}
	return nil
}

func applyPropagation(mnt *os.File, props []uintptr) error {
	for _, p := range props {
		if err := setPropagation(mnt, p); err != nil {
			return err
		}
	}
	return nil
}

func (m *mounter) bindOne(sm specs.Mount, dest string, mo mountOptions) error {
	if pre := m.cur; pre != nil {
		m.cur = nil // a cgroup bind that follows is the host's own
		return m.attachPrepared(pre, dest, mo)
	}
	srcPath := m.source(sm)
	src, err := os.OpenFile(srcPath, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := sys.Fstat(int(src.Fd()))
	if err != nil {
		return err
	}
	srcDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	kind := createFile
	if srcDir {
		kind = createDir
	}
	tgt, err := m.target(dest, kind, srcDir)
	if err != nil {
		return err
	}
	defer tgt.fd.Close()
	mnt, err := bindMount(src, tgt, mo.recursive)
	if err != nil {
		return err
	}
	defer mnt.Close()
	return bindAttrs(mnt, mo)
}

// attachPrepared attaches a bind mount the runtime made (a detached tree,
// idmapped or not: Prepared.Binds) at dest.
func (m *mounter) attachPrepared(tree *os.File, dest string, mo mountOptions) error {
	st, err := sys.Fstat(int(tree.Fd()))
	if err != nil {
		return err
	}
	srcDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	kind := createFile
	if srcDir {
		kind = createDir
	}
	tgt, err := m.target(dest, kind, srcDir)
	if err != nil {
		return err
	}
	defer tgt.fd.Close()
	if err := moveMount(int(tree.Fd()), tgt.fd); err != nil {
		return err
	}
	return bindAttrs(tree, mo)
}

// bindAttrs applies a bind mount's options to the new mount mnt.
func bindAttrs(mnt *os.File, mo mountOptions) error {
	// As the runtime spec and runc have it, the plain options apply to the
	// top mount and the r-options to the whole tree, rbind or not: an "ro"
	// rbind leaves the mounts below its source writable, an "rro" one
	// does not. (The daemon's read-only volumes are written "rro".)
	if err := setAttr(mnt, "", mo.recSet, mo.recClr, true); err != nil {
		return err
	}
	if err := setAttr(mnt, "", mo.attrSet, mo.attrClr, false); err != nil {
		return err
	}
	return applyPropagation(mnt, mo.propagation)
}

// bindHostSys binds the host's /sys recursively onto dst with attrs on
// every mount of the tree.
func bindHostSys(dst target, attrs uint64) (*os.File, error) {
	src, err := os.OpenFile("/sys", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	mnt, err := bindMount(src, dst, true)
	if err != nil {
		return nil, fmt.Errorf("bind the host's /sys (sysfs cannot be mounted in a user namespace without its own network namespace): %w", err)
	}
	if err := setAttr(mnt, "", attrs, 0, true); err != nil {
		mnt.Close()
		return nil, err
	}
	return mnt, nil
}

// inUserNamespace reports whether this process is in a user namespace
// other than the initial one (whose uid_map maps all 2^32-1 IDs to
// themselves).
func inUserNamespace() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(data))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}
