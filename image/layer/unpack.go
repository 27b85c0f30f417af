//go:build linux

package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/ctxio"
	"reconciled.dev/reconciled/internal/sys"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."     // aufs metadata (.wh..wh.plnk, .wh..wh.aufs): skipped
	whiteoutOpaque = ".wh..wh..opq" // the directory hides what lower layers have in it

	overlayOpaqueXattr = "trusted.overlay.opaque"
	overlayXattrPrefix = "trusted.overlay."
	paxXattrPrefix     = "SCHILY.xattr."
)

// inRoot is how every path of an entry is resolved below the layer
// directory: as if it were "/" (symlinks and ".." never lead out), no magic
// links, no crossing into another mount.
const inRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// Unpack extracts an uncompressed layer tar stream into dir, which exists
// and is empty, as root. Whiteouts are written in overlayfs form. It reads
// r to EOF, trailing padding included, so that a caller hashing r through
// a TeeReader sees the whole stream. It does not fsync: a caller that
// records the layer as complete syncs dir's filesystem first (syncfs).
// On error dir holds part of the layer; the caller removes it. It needs
// root (chown, mknod, trusted.* xattrs, linkat with AT_EMPTY_PATH).
//
// See the package documentation for what is done with each entry and how
// hostile entries are kept inside dir.
func Unpack(ctx context.Context, r io.Reader, dir string) (retErr error) {
	rootFd, err := sys.Openat(unix.AT_FDCWD, dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("unable to open layer directory: %w", err)
	}
	defer sys.CloseFd(rootFd)
	u := &unpacker{ctx: ctx, root: rootFd, buf: make([]byte, 128<<10)}
	tr := tar.NewReader(ctxio.Reader(ctx, r))
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("unpacking into %s: %w", dir, context.Cause(ctx))
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("unable to read the layer tar for %s: %w", dir, err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("unable to unpack layer entry %q into %s: %w", hdr.Name, dir, err)
		}
	}
	if err := u.setDirTimes(); err != nil {
		return fmt.Errorf("unpacking into %s: %w", dir, err)
	}
	if _, err := io.Copy(io.Discard, ctxio.Reader(ctx, r)); err != nil {
		return fmt.Errorf("unable to read the layer stream to its end: %w", err)
	}
	return nil
}

type unpacker struct {
	ctx  context.Context
	root int    // the layer directory, O_RDONLY|O_DIRECTORY
	buf  []byte // copy buffer for regular files
	dirs []dirTimes
}

// dirTimes are a directory's times, set after every entry because adding
// and removing children changes them.
type dirTimes struct {
	rel string
	ts  []unix.Timespec
}

// cleanName turns an entry name into a path relative to the layer root,
// cleaned as if rooted at "/" as docker and containerd do: "/../../etc/x"
// is "etc/x". The root itself is ".".
func cleanName(name string) string {
	rel := strings.TrimPrefix(path.Clean("/"+name), "/")
	if rel == "" {
		return "."
	}
	return rel
}

func (u *unpacker) entry(hdr *tar.Header, tr io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX global header: archive metadata, no file
	}
	rel := cleanName(hdr.Name)
	if rel == "." {
		// umoci CVE-2021-29136: a root entry that is a symlink would make
		// later entries land wherever it points.
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("the layer root may only be a directory, not type %q: %w", hdr.Typeflag, ErrInvalidEntry)
		}
		if err := u.setMeta(u.root, ".", hdr); err != nil {
			return err
		}
		u.dirs = append(u.dirs, dirTimes{".", times(hdr)})
		return nil
	}
	parent, base := path.Split(rel)
	if parent == "" {
		parent = "."
	}
	pfd, err := u.openParent(parent)
	if err != nil {
		return err
	}
	defer sys.CloseFd(pfd)

	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(pfd, parent, base)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdir(pfd, rel, base, hdr)
	case tar.TypeReg, '\x00', tar.TypeGNUSparse: // '\x00': the old TypeRegA
		return u.regular(pfd, base, hdr, tr)
	case tar.TypeSymlink:
		return u.symlink(pfd, base, hdr)
	case tar.TypeLink:
		return u.hardlink(pfd, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return u.mknod(pfd, base, hdr)
	default:
		return fmt.Errorf("unsupported entry type %q: %w", hdr.Typeflag, ErrInvalidEntry)
	}
}

// openParent opens the directory parent (relative to the root) resolved
// inside the root, creating missing directories (0755, root-owned) as
// containerd does. A symlink among them, made by an earlier entry, is
// followed inside the root only: RESOLVE_IN_ROOT makes its target, absolute
// or with "..", relative to the layer directory.
func (u *unpacker) openParent(parent string) (int, error) {
	how := func() *unix.OpenHow {
		return &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY, Resolve: inRoot}
	}
	fd, err := sys.Openat2(u.root, parent, how())
	if err == nil || !errors.Is(err, unix.ENOENT) {
		if err != nil {
			return -1, fmt.Errorf("unable to open parent directory %q: %w", parent, err)
		}
		return fd, nil
	}
	// Walk down from the root, creating what is missing. Each prefix is
	// resolved from the root again, so that symlinks resolve as above.
	cur, err := unix.FcntlInt(uintptr(u.root), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", err)
	}
	parts := strings.Split(parent, "/")
	for i, c := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		fd, err := sys.Openat2(u.root, prefix, how())
		if errors.Is(err, unix.ENOENT) {
			err = sys.IgnoringEINTR(func() error { return unix.Mkdirat(cur, c, 0o755) })
			if errors.Is(err, unix.EEXIST) {
				// The name exists but does not resolve: a dangling symlink
				// (whose target, inside the root, we do not create).
				sys.CloseFd(cur)
				return -1, fmt.Errorf("unable to create parent directory %q: %q is a dangling symlink: %w", parent, prefix, ErrInvalidEntry)
			}
			if err != nil {
				sys.CloseFd(cur)
				return -1, fmt.Errorf("unable to create parent directory %q: %w", prefix, pathErr("mkdirat", c, err))
			}
			fd, err = sys.Openat(cur, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		}
		sys.CloseFd(cur)
		if err != nil {
			return -1, fmt.Errorf("unable to open parent directory %q: %w", prefix, err)
		}
		cur = fd
	}
	return cur, nil
}

// makeRoom makes room for a new entry at name in pfd. A directory stays
// when the new entry is a directory too (it keeps its contents and takes
// the new metadata); anything else there is removed, a directory with its
// contents. It reports whether a directory stayed.
func makeRoom(pfd int, name string, newIsDir bool) (kept bool, _ error) {
	st, err := lstatat(pfd, name)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if newIsDir {
			return true, nil
		}
		return false, removeAllAt(pfd, name)
	}
	return false, unlinkat(pfd, name, 0)
}

func unlinkat(dirfd int, name string, flags int) error {
	return pathErr("unlinkat", name, sys.IgnoringEINTR(func() error { return unix.Unlinkat(dirfd, name, flags) }))
}

// removeAllAt removes name in dirfd and, if it is a directory, everything
// in it. Nothing is followed: each level is opened O_NOFOLLOW relative to
// the one above.
func removeAllAt(dirfd int, name string) error {
	err := unlinkat(dirfd, name, 0)
	if err == nil || !errors.Is(err, unix.EISDIR) {
		return err
	}
	fd, err := sys.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return fmt.Errorf("unable to list %s: %w", name, err)
	}
	for _, n := range names {
		if err := removeAllAt(fd, n); err != nil {
			d.Close()
			return err
		}
	}
	d.Close() // a directory opened for reading: nothing to lose
	return unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

func (u *unpacker) whiteout(pfd int, parent, base string) error {
	switch {
	case base == whiteoutOpaque:
		err := unix.Fsetxattr(pfd, overlayOpaqueXattr, []byte("y"), 0)
		if err != nil {
			return fmt.Errorf("unable to mark %q opaque: %w", parent, os.NewSyscallError("fsetxattr "+overlayOpaqueXattr, err))
		}
		return nil
	case strings.HasPrefix(base, whiteoutMeta):
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("whiteout of %q: %w", name, ErrInvalidEntry)
	}
	if _, err := makeRoom(pfd, name, false); err != nil {
		return fmt.Errorf("unable to remove %q for its whiteout: %w", name, err)
	}
	err := sys.IgnoringEINTR(func() error { return unix.Mknodat(pfd, name, unix.S_IFCHR, 0) })
	if err != nil {
		return fmt.Errorf("unable to create the whiteout for %q: %w", name, pathErr("mknodat", name, err))
	}
	return nil
}

func (u *unpacker) mkdir(pfd int, rel, base string, hdr *tar.Header) error {
	kept, err := makeRoom(pfd, base, true)
	if err != nil {
		return err
	}
	if !kept {
		if err := sys.IgnoringEINTR(func() error { return unix.Mkdirat(pfd, base, 0o700) }); err != nil {
			return pathErr("mkdirat", base, err)
		}
	}
	fd, err := sys.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer sys.CloseFd(fd)
	if err := u.setMeta(fd, base, hdr); err != nil {
		return err
	}
	u.dirs = append(u.dirs, dirTimes{rel, times(hdr)})
	return nil
}

// regular writes a regular file. The name is always a new inode (anything
// there, a hard link included, was unlinked first, and O_EXCL|O_NOFOLLOW
// refuse anything that appeared since), so no write reaches a file that
// another name shares.
func (u *unpacker) regular(pfd int, base string, hdr *tar.Header, tr io.Reader) error {
	if _, err := makeRoom(pfd, base, false); err != nil {
		return err
	}
	fd, err := sys.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	// struct{io.Writer} hides os.File's ReadFrom, so that our buffer is used.
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, tr, u.buf); err != nil {
		f.Close()
		return fmt.Errorf("unable to write contents: %w", err)
	}
	if err := u.setMeta(fd, base, hdr); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("unable to write contents: %w", err)
	}
	return setTimes(pfd, base, times(hdr))
}

func (u *unpacker) symlink(pfd int, base string, hdr *tar.Header) error {
	if _, err := makeRoom(pfd, base, false); err != nil {
		return err
	}
	if err := sys.IgnoringEINTR(func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) }); err != nil {
		return pathErr("symlinkat", base, err)
	}
	if err := u.setMetaAt(pfd, base, hdr, unix.S_IFLNK); err != nil {
		return err
	}
	return setTimes(pfd, base, times(hdr))
}

// hardlink links base to the entry's link target. The target is resolved
// inside the root, its final component not followed: a hard link to a
// symlink links the symlink itself. The entry's own mode, owner and times
// are not applied: they belong to the inode, which the entry that created
// it set; applying them (through a path that may be a symlink) is what
// containerd CVE-2021-32760 did wrong.
func (u *unpacker) hardlink(pfd int, base string, hdr *tar.Header) error {
	target := cleanName(hdr.Linkname)
	if target == "." {
		return fmt.Errorf("hard link to the layer root: %w", ErrInvalidEntry)
	}
	tfd, err := sys.Openat2(u.root, target, &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW, Resolve: inRoot})
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("hard link target %q is not in the layer: %w", hdr.Linkname, ErrInvalidEntry)
	}
	if err != nil {
		return fmt.Errorf("unable to open hard link target %q: %w", hdr.Linkname, err)
	}
	defer sys.CloseFd(tfd)
	tst, err := sys.Fstat(tfd)
	if err != nil {
		return err
	}
	if tst.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hard link target %q is a directory: %w", hdr.Linkname, ErrInvalidEntry)
	}
	if st, err := lstatat(pfd, base); err == nil && st.Dev == tst.Dev && st.Ino == tst.Ino {
		return nil // already that inode (a link to itself)
	}
	if _, err := makeRoom(pfd, base, false); err != nil {
		return err
	}
	// AT_EMPTY_PATH links the inode tfd holds (needs CAP_DAC_READ_SEARCH).
	err = sys.IgnoringEINTR(func() error { return unix.Linkat(tfd, "", pfd, base, unix.AT_EMPTY_PATH) })
	if err != nil {
		return fmt.Errorf("unable to link to %q: %w", hdr.Linkname, pathErr("linkat", base, err))
	}
	return nil
}

func (u *unpacker) mknod(pfd int, base string, hdr *tar.Header) error {
	if _, err := makeRoom(pfd, base, false); err != nil {
		return err
	}
	var typ uint32
	switch hdr.Typeflag {
	case tar.TypeChar:
		typ = unix.S_IFCHR
	case tar.TypeBlock:
		typ = unix.S_IFBLK
	default:
		typ = unix.S_IFIFO
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := sys.IgnoringEINTR(func() error { return unix.Mknodat(pfd, base, typ|0o600, int(dev)) }); err != nil {
		return pathErr("mknodat", base, err)
	}
	if err := u.setMetaAt(pfd, base, hdr, typ); err != nil {
		return err
	}
	return setTimes(pfd, base, times(hdr))
}

// setMeta sets owner, mode and xattrs on fd, the entry itself (a regular
// file we wrote or a directory opened O_NOFOLLOW). Owner first: chown
// clears setuid and setgid.
func (u *unpacker) setMeta(fd int, name string, hdr *tar.Header) error {
	if err := sys.IgnoringEINTR(func() error { return unix.Fchown(fd, hdr.Uid, hdr.Gid) }); err != nil {
		return pathErr(fmt.Sprintf("fchown %d:%d", hdr.Uid, hdr.Gid), name, err)
	}
	if err := sys.IgnoringEINTR(func() error { return unix.Fchmod(fd, mode(hdr)) }); err != nil {
		return pathErr(fmt.Sprintf("fchmod %#o", mode(hdr)), name, err)
	}
	return setXattrs(hdr, name, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) })
}

// setMetaAt sets owner, mode and xattrs on name in pfd, a symlink, device
// or fifo this entry just created (typ), which cannot be opened for
// writing. Nothing is followed: fchownat with AT_SYMLINK_NOFOLLOW;
// fchmodat2 with AT_SYMLINK_NOFOLLOW (Linux 6.6+; before, chmod through
// /proc/self/fd of an O_PATH|O_NOFOLLOW fd checked to be of type typ);
// lsetxattr on /proc/self/fd/<pfd>/<name>, whose last component is not
// followed. Symlinks get no mode (Linux has none for them).
func (u *unpacker) setMetaAt(pfd int, name string, hdr *tar.Header, typ uint32) error {
	err := sys.IgnoringEINTR(func() error { return unix.Fchownat(pfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW) })
	if err != nil {
		return pathErr(fmt.Sprintf("lchown %d:%d", hdr.Uid, hdr.Gid), name, err)
	}
	if typ != unix.S_IFLNK {
		if err := chmodNoFollow(pfd, name, mode(hdr), typ); err != nil {
			return err
		}
	}
	if len(xattrKeys(hdr)) == 0 {
		return nil
	}
	p, err := procFdPath(pfd)
	if err != nil {
		return err
	}
	p += "/" + name
	return setXattrs(hdr, name, func(k string, v []byte) error { return unix.Lsetxattr(p, k, v, 0) })
}

func chmodNoFollow(pfd int, name string, m, typ uint32) error {
	err := sys.IgnoringEINTR(func() error { return unix.Fchmodat(pfd, name, m, unix.AT_SYMLINK_NOFOLLOW) })
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return pathErr(fmt.Sprintf("fchmodat %#o", m), name, err)
	}
	// No fchmodat2 (Linux < 6.6).
	fd, st, err := sys.OpenPath(pfd, name)
	if err != nil {
		return err
	}
	defer sys.CloseFd(fd)
	if st.Mode&unix.S_IFMT != typ {
		return fmt.Errorf("%s became a %s: %w", name, sys.TypeName(st.Mode), ErrInvalidEntry)
	}
	p, err := procFdPath(fd)
	if err != nil {
		return err
	}
	return pathErr(fmt.Sprintf("chmod %#o", m), name, sys.IgnoringEINTR(func() error { return unix.Fchmodat(unix.AT_FDCWD, p, m, 0) }))
}

// procFdPath returns "/proc/self/fd/N" after checking that /proc is the
// root of a procfs, so that the magic link really names fd.
func procFdPath(fd int) (string, error) {
	if err := checkProcfs(); err != nil {
		return "", err
	}
	return fmt.Sprintf("/proc/self/fd/%d", fd), nil
}

// checkProcfs fails unless /proc is the root of a procfs.
func checkProcfs() error {
	pfd, err := sys.Openat(unix.AT_FDCWD, "/proc", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer sys.CloseFd(pfd)
	var sfs unix.Statfs_t
	if err := sys.IgnoringEINTR(func() error { return unix.Fstatfs(pfd, &sfs) }); err != nil {
		return os.NewSyscallError("fstatfs /proc", err)
	}
	st, err := sys.Fstat(pfd)
	if err != nil {
		return err
	}
	const procRootIno = 1
	if sfs.Type != unix.PROC_SUPER_MAGIC || st.Ino != procRootIno {
		return errors.New("/proc is not the root of a procfs")
	}
	return nil
}

// mode returns the permission bits of the entry, setuid, setgid and sticky
// included.
func mode(hdr *tar.Header) uint32 { return uint32(hdr.Mode) & 0o7777 }

// xattrKeys returns the names of the entry's extended attributes (PAX
// records SCHILY.xattr.<name>), sorted.
func xattrKeys(hdr *tar.Header) []string {
	var keys []string
	for k := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, paxXattrPrefix); ok {
			keys = append(keys, name)
		}
	}
	sort.Strings(keys)
	return keys
}

// setXattrs sets the entry's xattrs with set. Every one is set, and a
// failure fails the entry, with two exceptions:
//
//   - trusted.overlay.* is refused (ErrInvalidEntry): these attributes
//     steer overlayfs (redirect, metacopy, origin, opaque) and a layer must
//     express deletions with whiteout entries, which Unpack translates;
//   - security.selinux is skipped where the filesystem does not support it
//     (ENOTSUP): labels are host policy, applied by the runtime.
func setXattrs(hdr *tar.Header, name string, set func(k string, v []byte) error) error {
	for _, k := range xattrKeys(hdr) {
		if strings.HasPrefix(k, overlayXattrPrefix) {
			return fmt.Errorf("xattr %s would steer overlayfs: %w", k, ErrInvalidEntry)
		}
		v := []byte(hdr.PAXRecords[paxXattrPrefix+k])
		err := sys.IgnoringEINTR(func() error { return set(k, v) })
		if errors.Is(err, unix.ENOTSUP) && k == "security.selinux" {
			continue
		}
		if err != nil {
			return pathErr("setxattr "+k, name, err)
		}
	}
	return nil
}

// times returns the entry's access and modification times for
// utimensat; a missing access time is the modification time.
func times(hdr *tar.Header) []unix.Timespec {
	ts := func(t time.Time) unix.Timespec {
		if t.IsZero() {
			return unix.Timespec{}
		}
		return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
	}
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return []unix.Timespec{ts(at), ts(hdr.ModTime)}
}

// setTimes sets the times of name in pfd without following it.
func setTimes(pfd int, name string, ts []unix.Timespec) error {
	err := sys.IgnoringEINTR(func() error { return unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW) })
	return pathErr("utimensat", name, err)
}

// setDirTimes sets the times of the directory entries, in entry order (a
// directory given twice takes the later times), on what is a directory at
// that path now: one replaced by another type, or removed, is skipped.
func (u *unpacker) setDirTimes() error {
	for _, d := range u.dirs {
		if err := u.ctx.Err(); err != nil {
			return context.Cause(u.ctx)
		}
		if d.rel == "." {
			if err := setTimes(u.root, ".", d.ts); err != nil {
				return fmt.Errorf("unable to set the layer root's times: %w", err)
			}
			continue
		}
		parent, base := path.Split(d.rel)
		if parent == "" {
			parent = "."
		}
		pfd, err := sys.Openat2(u.root, parent, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY, Resolve: inRoot})
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("unable to set the times of %q: %w", d.rel, err)
		}
		st, err := lstatat(pfd, base)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = setTimes(pfd, base, d.ts)
		} else if errors.Is(err, unix.ENOENT) {
			err = nil
		}
		sys.CloseFd(pfd)
		if err != nil {
			return fmt.Errorf("unable to set the times of %q: %w", d.rel, err)
		}
	}
	return nil
}
