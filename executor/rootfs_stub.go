package executor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// setupRootfs prepares the container's filesystem inside its new mount
// namespace and pivots into it. It becomes rootfs.Setup once
// executor/internal/rootfs lands; minimalRootfs is a stand-in that handles
// what the lifecycle tests need.
var setupRootfs = minimalRootfs

var mountFlagNames = map[string]uintptr{
	"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC,
	"bind": unix.MS_BIND, "rbind": unix.MS_BIND | unix.MS_REC, "relatime": unix.MS_RELATIME,
	"strictatime": unix.MS_STRICTATIME, "noatime": unix.MS_NOATIME,
}

func minimalRootfs(s *specs.Spec, bundle string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return os.NewSyscallError("mount(/, rprivate)", err)
	}
	root := s.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root)
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return os.NewSyscallError("mount(rootfs, bind)", err)
	}
	for _, m := range s.Mounts {
		var flags uintptr
		var data []string
		for _, o := range m.Options {
			if f, ok := mountFlagNames[o]; ok {
				flags |= f
			} else if o != "rw" && o != "private" && o != "rprivate" {
				data = append(data, o)
			}
		}
		dest := filepath.Join(root, m.Destination)
		if flags&unix.MS_BIND != 0 {
			if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
				os.MkdirAll(filepath.Dir(dest), 0o755)
				if f, err := os.OpenFile(dest, os.O_CREATE|os.O_RDONLY, 0o644); err == nil {
					f.Close()
				}
			} else if err := os.MkdirAll(dest, 0o755); err != nil {
				return err
			}
			if err := unix.Mount(m.Source, dest, "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
				return fmt.Errorf("mount %s on %s: %w", m.Source, m.Destination, err)
			}
			if flags&^(unix.MS_BIND|unix.MS_REC) != 0 {
				if err := unix.Mount("", dest, "", flags|unix.MS_REMOUNT, ""); err != nil {
					return fmt.Errorf("remount %s: %w", m.Destination, err)
				}
			}
			continue
		}
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.Source, dest, m.Type, flags, strings.Join(data, ",")); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", m.Source, m.Type, m.Destination, err)
		}
	}
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return os.NewSyscallError("pivot_root", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return os.NewSyscallError("umount(old root)", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if s.Root.Readonly {
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return os.NewSyscallError("remount / ro", err)
		}
	}
	return nil
}
