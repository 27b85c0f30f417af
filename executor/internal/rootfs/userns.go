//go:build linux

package rootfs

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/sys"
)

// Prepared is what the runtime makes for an init in a user namespace
// before the init sets up its root (PrepareOutside): root inside the user
// namespace is no one on the host's files, so the init could not open the
// rootfs or a bind source behind a root-only directory, and idmapping a
// mount takes privilege over the filesystem (the host's user namespace).
type Prepared struct {
	// Root is an O_PATH fd of the rootfs, bound onto itself in the init's
	// mount namespace (idmapped when asked), "/" already made rslave (or
	// what linux.rootfsPropagation says) and the bind's parent private.
	Root *os.File
	// Binds are detached mount trees (open_tree(OPEN_TREE_CLONE)) of the
	// spec's bind mounts, by index in spec.Mounts, idmapped where the
	// mount asks for it; the init attaches them with move_mount.
	Binds map[int]*os.File
	// template: made by PrepareDetached, Root not attached yet.
	template bool
}

// Files returns p's descriptors in a fixed order (Root, then the binds by
// index) and Layout the indexes, for passing them to another process.
func (p *Prepared) Files() ([]*os.File, []int) {
	files := []*os.File{p.Root}
	idx := slices.Sorted(maps.Keys(p.Binds))
	for _, i := range idx {
		files = append(files, p.Binds[i])
	}
	return files, idx
}

// FromFiles is the inverse of Files.
func FromFiles(files []*os.File, idx []int) (*Prepared, error) {
	if len(files) != len(idx)+1 {
		return nil, fmt.Errorf("rootfs: %d prepared mounts for %d descriptors", len(idx), len(files))
	}
	p := &Prepared{Root: files[0], Binds: map[int]*os.File{}}
	for i, n := range idx {
		p.Binds[n] = files[i+1]
	}
	return p, nil
}

// Close closes every descriptor of p.
func (p *Prepared) Close() {
	if p == nil {
		return
	}
	if p.Root != nil {
		p.Root.Close()
	}
	for _, f := range p.Binds {
		f.Close()
	}
}

// IDMapper gives the user namespace (an open /proc/PID/ns/user) whose
// mappings a mount is idmapped with: uid and gid are the mount's
// uidMappings and gidMappings, both empty for the container's own.
type IDMapper func(uid, gid []specs.LinuxIDMapping) (*os.File, error)

// PrepareOutside makes p for an init in a user namespace. It runs on a
// thread of the runtime (host credentials) that has joined the init's
// mount namespace (unshare(CLONE_FS), setns(CLONE_NEWNS)), before the
// init starts its setup. idmapRoot: show the rootfs through an idmapped
// mount with the container's mappings (files owned by host UID 0 are root's
// inside), so that nothing is chowned.
func PrepareOutside(spec *specs.Spec, bundle string, idmapRoot bool, userns IDMapper) (_ *Prepared, err error) {
	if spec == nil || spec.Root == nil || spec.Root.Path == "" {
		return nil, errors.New("rootfs: spec has no root.path")
	}
	p := &Prepared{Binds: map[int]*os.File{}}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.Binds, err = detachBinds(spec, bundle, userns); err != nil {
		return nil, err
	}
	rootPath := spec.Root.Path
	if !filepath.IsAbs(rootPath) {
		rootPath = filepath.Join(bundle, rootPath)
	}
	var ns *os.File
	if idmapRoot {
		if ns, err = userns(nil, nil); err != nil {
			return nil, fmt.Errorf("rootfs: root %s: %w", rootPath, err)
		}
	}
	if p.Root, err = prepareRoot(spec, rootPath, ns); err != nil {
		return nil, err
	}
	return p, nil
}

// detachBinds clones the source of each bind mount of spec as a detached
// tree (detachedTree), by index in spec.Mounts, idmapped where the mount
// asks for it with the namespace userns gives (nil: no mount may ask).
func detachBinds(spec *specs.Spec, bundle string, userns IDMapper) (_ map[int]*os.File, err error) {
	binds := map[int]*os.File{}
	defer func() {
		if err != nil {
			for _, f := range binds {
				f.Close()
			}
		}
	}()
	for i, sm := range spec.Mounts {
		mo, err := parseOptions(sm.Type, sm.Options)
		if err != nil {
			return nil, fmt.Errorf("rootfs: mounts[%d] %s: %w: %w", i, sm.Destination, ErrInvalidMount, err)
		}
		mapped := len(sm.UIDMappings) > 0 || len(sm.GIDMappings) > 0
		if !mo.bind {
			if mapped || mo.idmap {
				return nil, fmt.Errorf("rootfs: mounts[%d] %s: %w: only bind mounts can be idmapped (type %q)", i, sm.Destination, ErrInvalidMount, sm.Type)
			}
			continue
		}
		src := sm.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(bundle, src)
		}
		var ns *os.File
		if mapped || mo.idmap {
			if userns == nil {
				return nil, fmt.Errorf("rootfs: mounts[%d] %s: %w: an idmapped mount needs a user namespace here", i, sm.Destination, ErrInvalidMount)
			}
			if ns, err = userns(sm.UIDMappings, sm.GIDMappings); err != nil {
				return nil, fmt.Errorf("rootfs: mounts[%d] %s: %w", i, sm.Destination, err)
			}
		}
		f, err := detachedTree(src, mo.recursive, ns, mo.ridmap)
		if err != nil {
			return nil, fmt.Errorf("rootfs: mounts[%d] %s (source %s): %w", i, sm.Destination, src, err)
		}
		binds[i] = f
	}
	return binds, nil
}

// detachedTree clones the mount tree at src (only its top mount unless
// recursive) into a detached mount and, with userns, idmaps it (every mount
// of the tree with ridmap) with that namespace's mappings.
func detachedTree(src string, recursive bool, userns *os.File, ridmap bool) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	var tfd int
	err := sys.IgnoringEINTR(func() (err error) {
		tfd, err = unix.OpenTree(unix.AT_FDCWD, src, flags)
		return err
	})
	if err != nil {
		err = &os.PathError{Op: "open_tree", Path: src, Err: err}
		if !recursive && errors.Is(err, unix.EINVAL) {
			if below := mountBelow(src); below != "" {
				// The kernel does not uncover what a locked mount (one
				// that came into this user namespace with its mount
				// namespace) hides.
				return nil, fmt.Errorf("%w: %s is mounted below it, and a bind that is not recursive would uncover what that mount hides: use rbind, or a source with no mount below it", err, below)
			}
		}
		return nil, err
	}
	f := os.NewFile(uintptr(tfd), src)
	if userns != nil {
		if err := idmap(f, userns, recursive && ridmap); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// mountBelow returns a mount point below dir, or "".
func mountBelow(dir string) string {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	ms, err := proc.Mounts(func(m *proc.Mount) bool { return strings.HasPrefix(m.Mountpoint, prefix) })
	if err != nil || len(ms) == 0 {
		return ""
	}
	return ms[0].Mountpoint
}

// ErrIDMapUnsupported: the kernel or the filesystem cannot idmap a mount.
var ErrIDMapUnsupported = errors.New("the kernel or the filesystem cannot idmap this mount (mount_setattr MOUNT_ATTR_IDMAP: Linux 5.12, and a filesystem with idmapped-mount support)")

// idmap sets MOUNT_ATTR_IDMAP with userns on the detached mount mnt.
func idmap(mnt, userns *os.File, recursive bool) error {
	flags := uint(unix.AT_EMPTY_PATH)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	err := sys.IgnoringEINTR(func() error { return unix.MountSetattr(int(mnt.Fd()), "", flags, &attr) })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.ENOSYS):
		var sfs unix.Statfs_t
		fs := ""
		if unix.Fstatfs(int(mnt.Fd()), &sfs) == nil {
			fs = fmt.Sprintf(" (filesystem magic %#x)", sfs.Type)
		}
		return fmt.Errorf("idmap %s%s: %w: %w", mnt.Name(), fs, ErrIDMapUnsupported, err)
	}
	return &os.PathError{Op: "mount_setattr MOUNT_ATTR_IDMAP", Path: mnt.Name(), Err: err}
}
