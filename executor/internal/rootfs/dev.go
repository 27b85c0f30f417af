//go:build linux

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

func fileMode(m os.FileMode) *os.FileMode { return &m }

// defaultDevices are created in every /dev this package populates
// (runc's set, less /dev/console which the caller binds to a pty).
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: fileMode(0o666)},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5, FileMode: fileMode(0o666)},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7, FileMode: fileMode(0o666)},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8, FileMode: fileMode(0o666)},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9, FileMode: fileMode(0o666)},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0, FileMode: fileMode(0o666)},
}

// devSymlinks are made in /dev; an existing entry is left alone.
var devSymlinks = [][2]string{
	{"/proc/self/fd", "fd"},
	{"/proc/self/fd/0", "stdin"},
	{"/proc/self/fd/1", "stdout"},
	{"/proc/self/fd/2", "stderr"},
}

// devices returns the default devices with the spec's added; a spec device
// replaces a default one at the same path.
func devices(spec []specs.LinuxDevice) []specs.LinuxDevice {
	var out []specs.LinuxDevice
	seen := map[string]int{}
	for _, d := range append(append([]specs.LinuxDevice(nil), defaultDevices...), spec...) {
		p := cleanDest(d.Path)
		if i, ok := seen[p]; ok {
			out[i] = d
			continue
		}
		seen[p] = len(out)
		out = append(out, d)
	}
	return out
}

// populateDev creates the device nodes, /dev/ptmx and the /dev symlinks,
// then makes /dev read-only if the spec asked for it.
func (m *mounter) populateDev() error {
	old := unix.Umask(0)
	defer unix.Umask(old)
	dirs := &dirCache{root: m.root}
	defer dirs.close()
	for _, d := range devices(m.linux.Devices) {
		if err := m.createDevice(d, dirs); err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
	}
	dev, err := dirs.open("/dev")
	if err != nil {
		return err
	}
	fd := int(dev.Fd())
	if err := unix.Unlinkat(fd, "ptmx", 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return sysErr("unlink /dev/ptmx", err)
	}
	if err := unix.Symlinkat("pts/ptmx", fd, "ptmx"); err != nil {
		return sysErr("symlink /dev/ptmx", err)
	}
	for _, l := range devSymlinks {
		if err := unix.Symlinkat(l[0], fd, l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return sysErr("symlink /dev/"+l[1], err)
		}
	}
	if m.devRO && m.devMnt != nil {
		if err := setAttr(m.devMnt, "", unix.MOUNT_ATTR_RDONLY, 0, false); err != nil {
			return err
		}
	}
	if m.devMnt != nil {
		m.devMnt.Close()
		m.devMnt = nil
	}
	return nil
}

// dirCache opens each directory inside root once (MkdirAllInRoot), not
// once per node made in it: four system calls fewer for each of /dev's
// nodes on a create's path.
type dirCache struct {
	root *os.File
	dirs map[string]*os.File
}

func (c *dirCache) open(dir string) (*os.File, error) {
	dir = cleanDest(dir)
	if f, ok := c.dirs[dir]; ok {
		return f, nil
	}
	f, err := MkdirAllInRoot(c.root, dir, 0o755)
	if err != nil {
		return nil, err
	}
	if c.dirs == nil {
		c.dirs = map[string]*os.File{}
	}
	c.dirs[dir] = f
	return f, nil
}

func (c *dirCache) close() {
	for _, f := range c.dirs {
		f.Close()
	}
}

func deviceType(t string) (uint32, error) {
	switch t {
	case "c", "u":
		return unix.S_IFCHR, nil
	case "b":
		return unix.S_IFBLK, nil
	case "p":
		return unix.S_IFIFO, nil
	}
	return 0, fmt.Errorf("unknown device type %q", t)
}

// createDevice makes one node with mknodat(2) in its directory, opened
// inside the root; where mknod is not permitted (a user namespace) it
// bind-mounts the host's node of the same path instead, as runc does. The
// result is checked with fstat on an O_NOFOLLOW fd. An existing entry is
// left alone. Its directory is opened (made) inside the root by dirs.
func (m *mounter) createDevice(d specs.LinuxDevice, dirs *dirCache) error {
	p := cleanDest(d.Path)
	dir, name := filepath.Split(p)
	if name == "" {
		return fmt.Errorf("%w: bad device path %q", ErrInvalidMount, d.Path)
	}
	typ, err := deviceType(d.Type)
	if err != nil {
		return err
	}
	perm := os.FileMode(0o666)
	if d.FileMode != nil {
		perm = d.FileMode.Perm()
	}
	var rdev uint64
	if typ != unix.S_IFIFO {
		rdev = unix.Mkdev(uint32(d.Major), uint32(d.Minor))
	}
	parent, err := dirs.open(dir)
	if err != nil {
		return err
	}
	pfd := int(parent.Fd())
	mknod := func() error {
		return sys.IgnoringEINTR(func() error { return unix.Mknodat(pfd, name, typ|uint32(perm), int(rdev)) })
	}
	err = mknod()
	if errors.Is(err, unix.EEXIST) {
		// Something the spec mounted there (a bind onto /dev/xyz), or the
		// same path listed twice: keep it, as runc does. But never a
		// symlink, which a /dev filesystem with content could hold.
		isLink, lerr := isSymlinkAt(pfd, name)
		if lerr != nil {
			return lerr
		}
		if !isLink {
			return nil
		}
		if err := unix.Unlinkat(pfd, name, 0); err != nil {
			return sysErr("unlink the symlink "+p, err)
		}
		err = mknod()
	}
	bound := false
	if errors.Is(err, unix.EPERM) {
		if err := m.bindHostDevice(parent, name, p, typ, rdev); err != nil {
			return err
		}
		bound = true
	} else if err != nil {
		return sysErr("mknodat", err)
	}
	fd, st, err := sys.OpenPath(pfd, name)
	if err != nil {
		return err
	}
	defer sys.CloseFd(fd)
	if st.Mode&unix.S_IFMT != typ || (typ != unix.S_IFIFO && st.Rdev != rdev) {
		return fmt.Errorf("%s is a %s %d:%d after creating it: %w", p, sys.TypeName(st.Mode),
			unix.Major(st.Rdev), unix.Minor(st.Rdev), ErrUnexpectedType)
	}
	if !bound && (d.UID != nil || d.GID != nil) {
		uid, gid := -1, -1
		if d.UID != nil {
			uid = int(*d.UID)
		}
		if d.GID != nil {
			gid = int(*d.GID)
		}
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return sysErr("fchownat", err)
		}
	}
	return nil
}

func (m *mounter) bindHostDevice(parent *os.File, name, path string, typ uint32, rdev uint64) error {
	host, err := os.OpenFile(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("mknod not permitted and no host node to bind: %w", err)
	}
	defer host.Close()
	st, err := sys.Fstat(int(host.Fd()))
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != typ || st.Rdev != rdev {
		return fmt.Errorf("host %s is not the device the spec names: %w", path, ErrUnexpectedType)
	}
	nfd, err := sys.Openat(int(parent.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	sys.CloseFd(nfd)
	fd, err := sys.Openat(int(parent.Fd()), name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	tf := os.NewFile(uintptr(fd), path)
	defer tf.Close()
	mnt, err := bindMount(host, target{root: m.root, path: path, fd: tf}, false)
	if err != nil {
		return err
	}
	return mnt.Close()
}

func isSymlinkAt(dirfd int, name string) (bool, error) {
	fd, st, err := sys.OpenPath(dirfd, name)
	if err != nil {
		return false, err
	}
	sys.CloseFd(fd)
	return st.Mode&unix.S_IFMT == unix.S_IFLNK, nil
}
