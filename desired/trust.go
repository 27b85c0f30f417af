package desired

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// trustCheck is the strict check of one Scan (or Load): see Scan.
type trustCheck struct {
	// under is the manifests path as given, absolute and clean: the
	// directories above it are trusted as configured where a way merely
	// passes through them (it holds neither a link nor what the way
	// leads to).
	under string
	// dirs collects every directory checked, for the watcher's resync
	// (a chmod or chown of one changes its ctime).
	dirs map[string]bool
}

// maxLinks bounds the symlinks one way follows, as the kernel's
// MAXSYMLINKS does.
const maxLinks = 40

// way checks the way from the real directory dir (no symlink in it) to
// rest (a path relative to dir, or absolute): every directory a name is
// looked up in, except the directories above tc.under when what is found
// there is neither a symlink nor the end of the way; every symlink met
// (owned by root), its target followed hop by hop; and the object the way
// ends at. It returns why the way may not be trusted ("" when it may),
// or, when it met nothing wrong before a lookup failed (a missing path),
// that failure.
func (tc *trustCheck) way(dir, rest string) (string, error) {
	links := 0
	for {
		rest = strings.TrimLeft(rest, "/")
		if rest == "" {
			break
		}
		name, tail, _ := strings.Cut(rest, "/")
		rest = tail
		switch name {
		case ".":
			continue
		case "..":
			if !tc.above(dir) {
				if why := tc.dir(dir); why != "" {
					return why, nil
				}
			}
			dir = filepath.Dir(dir)
			continue
		}
		next := joinName(dir, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", fmt.Errorf("unable to check %s: %w", next, unwrapPathError(err))
		}
		link := fi.Mode()&fs.ModeSymlink != 0
		end := !link && onlyDots(rest)
		if link || end || !tc.above(dir) {
			if why := tc.dir(dir); why != "" {
				return why, nil
			}
		}
		if link {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
				return fmt.Sprintf("the symlink %s is owned by uid %d, not root", next, st.Uid), nil
			}
			if links++; links > maxLinks {
				return fmt.Sprintf("%s: more than %d symlinks on the way", next, maxLinks), nil
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", fmt.Errorf("unable to check %s: %w", next, unwrapPathError(err))
			}
			if filepath.IsAbs(target) {
				dir = "/"
			}
			rest = target + "/" + rest
			continue
		}
		if !end && !fi.IsDir() {
			return "", fmt.Errorf("unable to check %s: not a directory", next)
		}
		dir = next
	}
	// dir is where the way ends (a directory, or a file when it was the
	// last name: Lstat again, dir is a file's path then).
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("unable to check %s: %w", dir, unwrapPathError(err))
	}
	if fi.IsDir() && tc.dirs != nil {
		tc.dirs[dir] = true
	}
	return untrustedInfo(dir, fi), nil
}

// above says whether dir is a directory above the manifests path as given.
func (tc *trustCheck) above(dir string) bool {
	return dir == "/" || strings.HasPrefix(tc.under, dir+"/")
}

// dir checks one real directory.
func (tc *trustCheck) dir(path string) string {
	if tc.dirs != nil {
		tc.dirs[path] = true
	}
	return untrusted(path)
}

// onlyDots says whether the rest of a path names nothing more (only "."
// and empty components).
func onlyDots(rest string) bool {
	for _, c := range strings.Split(rest, "/") {
		if c != "" && c != "." {
			return false
		}
	}
	return true
}

// untrusted returns why path may not hold manifests ("" when it may).
func untrusted(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Sprintf("unable to check %s: %v", path, unwrapPathError(err))
	}
	return untrustedInfo(path, fi)
}

// Untrusted says why path, with fi its Lstat or Stat, may not be read as
// root: not owned by root, or writable by group or others (sticky or not).
// The manifests' rule, which the daemon's import directory follows too.
func Untrusted(path string, fi fs.FileInfo) string { return untrustedInfo(path, fi) }

func untrustedInfo(path string, fi fs.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		return fmt.Sprintf("%s is owned by uid %d, not root", path, st.Uid)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		if fi.Mode()&fs.ModeSticky != 0 {
			// /tmp: refused too. The sticky bit keeps others from
			// renaming root's entries, not from making first a name the
			// way expects.
			return fmt.Sprintf("%s is writable by group or others (mode %04o, sticky or not; use chmod go-w, or keep manifests elsewhere)", path, perm|0o1000)
		}
		return fmt.Sprintf("%s is writable by group or others (mode %04o; use chmod go-w)", path, perm)
	}
	return ""
}
