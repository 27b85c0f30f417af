//go:build linux

package layer

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// ErrIDMapUnusable: the kernel cannot mount an overlay of idmapped layers
// (MountIDMapped): it needs mount_setattr's MOUNT_ATTR_IDMAP on the
// layers' filesystem and overlayfs taking detached mounts as layers by
// file descriptor (fsconfig FSCONFIG_SET_FD of lowerdir+, upperdir,
// workdir).
var ErrIDMapUnusable = errors.New("the kernel cannot mount an overlay of idmapped layers")

// MountIDMapped is Mount of a writable overlay (upper and work required)
// whose lower layers are idmapped with the mappings of the user namespace
// userns (an open /proc/PID/ns/user): a file a layer stores as owned by ID
// n shows as owned by the host ID the namespace maps n to, so a container
// in that user namespace sees the image as its own and no layer is
// chowned. upper and work are not idmapped (overlayfs makes its work
// directory with the mounter's IDs, which the mapping has not): what the
// container writes lands in upper with its host IDs, and an empty upper
// takes the top layer's root owner through hostIDs (the mapping). An
// overlay mount cannot itself be idmapped; its layers can (Linux 5.19),
// given as detached idmapped mounts by file descriptor (Linux 6.13).
func MountIDMapped(target string, layers []string, upper, work string, userns *os.File, hostIDs func(uid, gid uint32) (int, int)) error {
	if len(layers) == 0 || len(layers) > maxLayers {
		return fmt.Errorf("unable to mount an image at %s: %d layers (1 to %d)", target, len(layers), maxLayers)
	}
	if upper == "" || work == "" {
		return fmt.Errorf("unable to mount an image at %s: an idmapped overlay needs upper and work", target)
	}
	tfd, err := sys.Openat(unix.AT_FDCWD, target, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("unable to open mount target: %w", err)
	}
	defer sys.CloseFd(tfd)
	var fds []int
	defer func() {
		for _, fd := range fds {
			sys.CloseFd(fd)
		}
	}()
	// idmapped returns a detached, idmapped clone of directory p.
	idmapped := func(what, p string) (int, error) {
		var fd int
		err := sys.IgnoringEINTR(func() (err error) {
			fd, err = unix.OpenTree(unix.AT_FDCWD, p, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
			return err
		})
		if err != nil {
			return -1, fmt.Errorf("unable to mount an image at %s: %s: %w", target, what, pathErr("open_tree", p, err))
		}
		fds = append(fds, fd)
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
		if err := sys.IgnoringEINTR(func() error { return unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr) }); err != nil {
			return -1, fmt.Errorf("%w: %s %s: %w", ErrIDMapUnusable, what, p, os.NewSyscallError("mount_setattr MOUNT_ATTR_IDMAP", err))
		}
		return fd, nil
	}
	top, err := sys.Openat(unix.AT_FDCWD, layers[len(layers)-1], unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("unable to mount an image at %s: layer %d: %w", target, len(layers)-1, err)
	}
	err = matchRootMapped(upper, dirFd{top, layers[len(layers)-1]}, hostIDs)
	sys.CloseFd(top)
	if err != nil {
		return fmt.Errorf("unable to mount an image at %s: %w", target, err)
	}
	var fsfd int
	if err := sys.IgnoringEINTR(func() (err error) { fsfd, err = unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC); return err }); err != nil {
		return fmt.Errorf("%w: %w", ErrOverlayUnusable, os.NewSyscallError("fsopen overlay", err))
	}
	defer sys.CloseFd(fsfd)
	refused := func(what string, err error) error {
		if msg := sys.FsLog(fsfd); msg != "" {
			return fmt.Errorf("%w: %s: %w (kernel: %s)", ErrIDMapUnusable, what, err, msg)
		}
		return fmt.Errorf("%w: %s: %w", ErrIDMapUnusable, what, err)
	}
	setFd := func(key, what, p string) error {
		fd, err := idmapped(what, p)
		if err != nil {
			return err
		}
		if err := sys.IgnoringEINTR(func() error { return unix.FsconfigSetFd(fsfd, key, fd) }); err != nil {
			return refused("fsconfig "+key+" (an idmapped "+what+" by fd: Linux 6.13)", err)
		}
		return nil
	}
	if err := unix.FsconfigSetString(fsfd, "source", "overlay"); err != nil {
		return refused("fsconfig source=overlay", err)
	}
	for i := len(layers) - 1; i >= 0; i-- { // highest first
		if err := setFd("lowerdir+", fmt.Sprintf("layer %d", i), layers[i]); err != nil {
			return err
		}
	}
	for _, d := range []struct{ key, path string }{{"upperdir", upper}, {"workdir", work}} {
		fd, err := sys.Openat(unix.AT_FDCWD, d.path, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return fmt.Errorf("unable to mount an image at %s: %s: %w", target, d.path, err)
		}
		fds = append(fds, fd)
		if err := sys.IgnoringEINTR(func() error { return unix.FsconfigSetFd(fsfd, d.key, fd) }); err != nil {
			return refused("fsconfig "+d.key+" by fd (Linux 6.13)", err)
		}
	}
	if err := sys.IgnoringEINTR(func() error { return unix.FsconfigCreate(fsfd) }); err != nil {
		return refused("fsconfig create", err)
	}
	var mfd int
	if err := sys.IgnoringEINTR(func() (err error) { mfd, err = unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0); return err }); err != nil {
		return refused("fsmount", err)
	}
	defer sys.CloseFd(mfd)
	return moveMount(mfd, tfd, target)
}

// matchRootMapped is matchRoot with the top layer's root owner mapped to
// the host IDs the container's user namespace gives it.
func matchRootMapped(upper string, top dirFd, hostIDs func(uid, gid uint32) (int, int)) error {
	fd, err := sys.Openat(unix.AT_FDCWD, upper, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("upper: %w", err)
	}
	d := os.NewFile(uintptr(fd), upper)
	defer d.Close() // a directory opened for reading: nothing to lose
	if names, err := d.Readdirnames(1); len(names) > 0 {
		return nil
	} else if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("unable to list %s: %w", upper, err)
	}
	st, err := sys.Fstat(top.fd)
	if err != nil {
		return fmt.Errorf("layer %s: %w", top.path, err)
	}
	uid, gid := hostIDs(st.Uid, st.Gid)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return pathErr("fchown", upper, err)
	}
	return pathErr("fchmod", upper, unix.Fchmod(fd, st.Mode&0o7777))
}
