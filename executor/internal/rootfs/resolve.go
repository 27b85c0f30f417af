//go:build linux

package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// maxSymlinks bounds the symlinks one resolution follows, as the kernel's
// own limit (40) does for path walks.
const maxSymlinks = 40

// noOpenat2 is set once openat2(2) reported ENOSYS (kernels before 5.6);
// tests set it to exercise the component-wise walk.
var noOpenat2 bool

// inRootPath cleans p as a path inside a root: absolute or not, ".."
// cannot climb above "/". It returns the path relative to the root, "."
// for the root itself.
func inRootPath(p string) string {
	rel := strings.TrimPrefix(filepath.Clean("/"+p), "/")
	if rel == "" {
		return "."
	}
	return rel
}

// OpenInRoot opens path as if root were "/": symlinks (absolute or
// relative) and ".." are resolved inside root and never lead out of it, and
// magic links (/proc/self/fd/N, /proc/self/root, ...) are refused. The
// result is an O_PATH file descriptor of whatever the path names (the
// final component's symlink is followed, inside root); check its type with
// Stat or fstat before using it.
//
// It uses openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS) and falls back to
// a component-wise walk on kernels without openat2.
func OpenInRoot(root *os.File, path string) (*os.File, error) {
	return openInRoot(root, path, false)
}

// openNoSymlinks opens path in root like OpenInRoot but fails with ELOOP
// when any component is a symlink.
func openNoSymlinks(root *os.File, path string) (*os.File, error) {
	return openInRoot(root, path, true)
}

func openInRoot(root *os.File, path string, noSymlinks bool) (*os.File, error) {
	rel := inRootPath(path)
	if !noOpenat2 {
		resolve := uint64(unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS)
		if noSymlinks {
			resolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS
		}
		fd, err := sys.Openat2(int(root.Fd()), rel, &unix.OpenHow{Flags: unix.O_PATH, Resolve: resolve})
		if err == nil {
			return os.NewFile(uintptr(fd), "/"+rel), nil
		}
		if !errors.Is(err, unix.ENOSYS) {
			return nil, &os.PathError{Op: "open in root", Path: "/" + rel, Err: errors.Unwrap(err)}
		}
		noOpenat2 = true
	}
	return walkInRoot(root, rel, createNone, 0, noSymlinks)
}

// MkdirAllInRoot is OpenInRoot that creates what is missing as
// directories with mode (subject to the umask). Symlinks are followed
// inside root, so a dangling symlink to "/x/y" makes root's x/y, never the
// host's. The result must be a directory.
func MkdirAllInRoot(root *os.File, path string, mode os.FileMode) (*os.File, error) {
	f, err := openOrCreate(root, path, createDir, uint32(mode.Perm()))
	if err != nil {
		return nil, err
	}
	if err := checkType(f, unix.S_IFDIR); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

type createKind int

const (
	createNone createKind = iota
	createDir             // missing final component: a directory
	createFile            // missing final component: an empty regular file
)

// openOrCreate opens path in root, creating missing components: missing
// parents as directories (0755), the final one as kind says.
func openOrCreate(root *os.File, path string, kind createKind, mode uint32) (*os.File, error) {
	f, err := OpenInRoot(root, path)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return f, err
	}
	return walkInRoot(root, inRootPath(path), kind, mode, false)
}

// walkInRoot resolves rel (already cleaned, relative to root) one component
// at a time: each component is opened O_PATH|O_NOFOLLOW relative to the
// directory fd reached so far; a symlink is read and its target spliced
// into the remaining components (an absolute one restarts at root); ".."
// pops the stack of directory fds and stops at root. Nothing is ever
// resolved relative to a path string the kernel walks on its own, so
// neither symlinks nor ".." nor magic links (read as plain text) lead out
// of root. With kind != createNone missing components are created. With
// noSymlinks any symlink fails the walk with ELOOP.
func walkInRoot(root *os.File, rel string, kind createKind, mode uint32, noSymlinks bool) (_ *os.File, retErr error) {
	rootFd := int(root.Fd())
	var stack []int // directories below root; root itself is not in it
	defer func() {
		for _, fd := range stack {
			sys.CloseFd(fd)
		}
	}()
	top := func() int {
		if len(stack) == 0 {
			return rootFd
		}
		return stack[len(stack)-1]
	}
	fail := func(err error) (*os.File, error) {
		return nil, &os.PathError{Op: "walk in root", Path: "/" + rel, Err: unwrapErrno(err)}
	}

	parts := strings.Split(rel, "/")
	links := 0
	var last int = -1 // fd of the final component when it is not a directory
	defer func() { sys.CloseFd(last) }()
	for len(parts) > 0 {
		c := parts[0]
		parts = parts[1:]
		final := len(parts) == 0
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) > 0 {
				sys.CloseFd(stack[len(stack)-1])
				stack = stack[:len(stack)-1]
			}
			continue
		}
		fd, err := sys.Openat(top(), c, unix.O_PATH|unix.O_NOFOLLOW, 0)
		if errors.Is(err, unix.ENOENT) && kind != createNone {
			if final && kind == createFile {
				var nfd int
				nfd, err = sys.Openat(top(), c, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW, mode)
				sys.CloseFd(nfd)
			} else {
				m := uint32(0o755)
				if final {
					m = mode
				}
				err = sys.IgnoringEINTR(func() error { return unix.Mkdirat(top(), c, m) })
			}
			if err != nil && !errors.Is(err, unix.EEXIST) {
				return fail(err)
			}
			fd, err = sys.Openat(top(), c, unix.O_PATH|unix.O_NOFOLLOW, 0)
		}
		if err != nil {
			return fail(err)
		}
		st, err := sys.Fstat(fd)
		if err != nil {
			sys.CloseFd(fd)
			return fail(err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			links++
			if links > maxSymlinks || noSymlinks {
				sys.CloseFd(fd)
				return fail(unix.ELOOP)
			}
			target, err := readlinkat(fd, "")
			sys.CloseFd(fd)
			if err != nil {
				return fail(err)
			}
			if strings.HasPrefix(target, "/") {
				for _, d := range stack {
					sys.CloseFd(d)
				}
				stack = stack[:0]
			}
			parts = append(strings.Split(target, "/"), parts...)
		case unix.S_IFDIR:
			stack = append(stack, fd)
		default:
			if !final {
				sys.CloseFd(fd)
				return fail(unix.ENOTDIR)
			}
			last = fd
		}
	}
	if last >= 0 {
		f := os.NewFile(uintptr(last), "/"+rel)
		last = -1
		return f, nil
	}
	if len(stack) == 0 {
		return dupFile(root)
	}
	fd := stack[len(stack)-1]
	stack = stack[:len(stack)-1]
	return os.NewFile(uintptr(fd), "/"+rel), nil
}

func unwrapErrno(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// checkType fails unless f's file type (S_IFDIR, S_IFREG, ...) is want.
func checkType(f *os.File, want uint32) error {
	st, err := sys.Fstat(int(f.Fd()))
	if err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if st.Mode&unix.S_IFMT != want {
		return fmt.Errorf("%s is a %s, want a %s: %w", f.Name(), sys.TypeName(st.Mode), sys.TypeName(want), ErrUnexpectedType)
	}
	return nil
}
