package desired

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"reconciled.dev/reconciled/internal/sys"
)

// ErrNotExist is returned by Scan (wrapped) when the manifests path does not
// exist or is a dangling link.
var ErrNotExist = errors.New("manifests directory does not exist")

// File is one manifest file as read by Scan.
type File struct {
	// Path is the absolute path under the manifests path as given (through
	// a symlink, not its target), the key in Set.Files.
	Path string
	// Name is the path for messages (Options.DisplayPrefix + relative path).
	Name string
	Data []byte
	// Hash is the sha256 of Data.
	Hash string
	// Err is set when the file could not be read or was refused; Data is
	// then empty.
	Err *Error
	// unread: Err is a failure to read that says nothing about the file
	// (see resourceError). Next keeps the file's last content in force,
	// and a Loader lists it for another read (Loader.Unread).
	unread bool
}

// resourceError says whether err, met reading a manifest, is the host's
// lack of a resource or a failure of the device (EMFILE, ENFILE, ENOMEM,
// ENOBUFS, EAGAIN, EINTR, EIO, ETIMEDOUT) rather than anything about the
// file: not a verdict on the manifest, and gone, most likely, at a later
// try.
func resourceError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.ENOBUFS,
		syscall.EAGAIN, syscall.EINTR, syscall.EIO, syscall.ETIMEDOUT} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Snapshot is everything Scan read from a manifests directory: the input of
// Next.
type Snapshot struct {
	Files []File
	// Dirs are the real (resolved) directories walked, for the watcher.
	Dirs []string
	// Revision is the git revision of the checkout, "" when unknown.
	Revision string
	// Root is the manifests path resolved through symlinks.
	Root string
	// links records every symlink met while walking and what it pointed
	// to, so a caller can check that nothing moved during the walk.
	links map[string]string
	// trust holds every directory the strict check looked at (see
	// trustCheck), nil when not strict.
	trust map[string]bool

	// What a Loader's event-driven read needs (see Loader): the manifests
	// path made absolute, every directory walked by real path, and the
	// entries read again at every Load.
	abs      string
	dirs     map[string]dirInfo
	volatile []fileRef
	// delta, in a snapshot made by patching the last one (the Loader's
	// event-driven Load), holds the files read again, by Path (File{}
	// for one gone).
	delta map[string]File
}

// dirInfo is what a walk knew of one directory it read.
type dirInfo struct {
	abs, rel string // the directory under the manifests path, relative to it
	refuse   string // the reason every file in it is refused ("" for none)
}

// fileRef is a manifest entry whose read a Load cannot reuse: a symlink
// (its target may change with no event in a directory walked, and the
// link may point to a directory, which is not read), a regular file with
// more than one hard link (it may be written through another one), or a
// file whose read failed or found no regular file (the full path reads
// those every time as well).
type fileRef struct {
	abs, real, name, refuse string
	link                    bool
}

// byPath orders Files by Path.
func byPath(a, b File) int { return strings.Compare(a.Path, b.Path) }

// strictlySorted says whether files are in Path order, no Path twice.
func strictlySorted(files []File) bool {
	for i := 1; i < len(files); i++ {
		if files[i-1].Path >= files[i].Path {
			return false
		}
	}
	return true
}

// isManifestName says whether a directory entry is read: a name ending in
// .yaml, .yml or .json that does not start with a dot. Editors' temporary
// files (vim's 4913 and .swp, ~ backups, emacs .# locks) do not match.
func isManifestName(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch filepath.Ext(name) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// maxDepth bounds how deep Scan walks subdirectories.
const maxDepth = 8

// Scan reads a manifests directory, or a single file. It walks
// subdirectories (not dot-directories such as .git, and not symlinks to
// directories), reads every manifest file, following symlinks to files,
// and caps each read at MaxFileSize.
//
// When the process runs as root and opts.InsecureManifests is false, a
// file is refused (File.Err) unless every step of the way to it is owned
// by root and not writable by group or others (sticky or not), as sshd's
// StrictModes asks: the file; every directory from the manifests path down
// to it; the manifests directory and the directory that holds it; and for
// every symlink met on the way (the manifests path, a symlinked file, or a
// link inside a link's target), the link itself (owned by root), the
// directory that holds it and every directory its target leads through
// (see trustCheck). The directories above the manifests path as given are
// trusted as configured where the way merely passes through them. When
// the manifests path is missing and the part of the way to it that exists
// fails the check, Scan returns an error that does not wrap ErrNotExist:
// whoever can write there must not be able to remove every container.
func Scan(dir string, opts Options) (*Snapshot, error) {
	return scan(dir, opts, nil)
}

// scan is Scan, taking files from c (when not nil) that did not change.
func scan(dir string, opts Options, c *scanCache) (*Snapshot, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("unable to resolve %s: %w", dir, err)
	}
	snap := &Snapshot{links: map[string]string{}, abs: abs}
	strict := opts.strict()
	var tc *trustCheck
	if strict {
		tc = &trustCheck{under: abs, dirs: map[string]bool{}}
		snap.trust = tc.dirs
	}
	real, err := resolve(abs, snap.links)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if tc != nil {
				if why, _ := tc.way("/", abs); why != "" {
					return nil, fmt.Errorf("%s is missing, and the way to it is refused: %s; keeping its containers (run with --insecure-manifests to skip this check)", dir, why)
				}
			}
			return nil, fmt.Errorf("%s: %w", dir, ErrNotExist)
		}
		return nil, fmt.Errorf("unable to resolve %s: %w", dir, err)
	}
	snap.Root = real
	fi, err := os.Stat(real)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", dir, ErrNotExist)
		}
		return nil, fmt.Errorf("unable to stat %s: %w", dir, err)
	}
	var refuse string // reason every file is refused, from the top
	if tc != nil {
		var err error
		if refuse, err = tc.way("/", abs); err != nil && refuse == "" {
			refuse = err.Error()
		}
	}
	if !fi.IsDir() {
		name := dir
		if opts.DisplayPrefix != "" {
			name = opts.DisplayPrefix
		}
		if f, ok, _ := readFile(abs, real, name, tc, refuse, false); ok {
			snap.Files = []File{f}
		}
		return snap, nil
	}
	snap.Dirs = []string{real}
	snap.dirs = map[string]dirInfo{}
	w := walker{snap: snap, trust: tc, prefix: opts.DisplayPrefix, cache: c}
	dirty := c != nil && (c.dirty[abs] || c.dirty[real])
	if err := w.walk(abs, real, "", 0, refuse, dirty); err != nil {
		return nil, err
	}
	// The walk's order is by name in each directory, a directory's files
	// coming where its name sorts; Next and a Loader want Path order.
	slices.SortFunc(snap.Files, byPath)
	snap.Revision = revision(real)
	return snap, nil
}

// resolve follows abs through symlinks, recording each link met.
func resolve(abs string, links map[string]string) (string, error) {
	if t, err := os.Readlink(abs); err == nil {
		links[abs] = t
	}
	return filepath.EvalSymlinks(abs)
}

// walker is one Scan's walk of a directory tree.
type walker struct {
	snap   *Snapshot
	trust  *trustCheck // nil: not strict
	prefix string
	cache  *scanCache // nil: read every file
}

// walk reads the directory realDir, found at absDir under the manifests
// path. refuse is the reason every file in it is refused ("" for none);
// dirty says that realDir or a directory above it was marked dirty, so
// that no file under it is taken from the cache.
func (w *walker) walk(absDir, realDir, rel string, depth int, refuse string, dirty bool) error {
	snap := w.snap
	d, err := os.Open(realDir)
	var entries []fs.DirEntry
	if err == nil {
		defer d.Close()
		entries, err = d.ReadDir(-1)
	}
	if err != nil {
		if depth > 0 && errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked; the watcher rescans
		}
		return fmt.Errorf("unable to read %s: %w", realDir, err)
	}
	snap.dirs[realDir] = dirInfo{abs: absDir, rel: rel, refuse: refuse}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	dirfd := -1
	if w.cache != nil {
		dirfd = int(d.Fd())
	}
	for _, e := range entries {
		name := e.Name()
		real := joinName(realDir, name)
		if e.Type()&fs.ModeSymlink != 0 {
			if t, err := os.Readlink(real); err == nil {
				snap.links[real] = t
			}
		}
		if strings.HasPrefix(name, ".") {
			continue
		}
		r := joinName(rel, name)
		if e.IsDir() {
			if depth+1 >= maxDepth {
				continue
			}
			snap.Dirs = append(snap.Dirs, real)
			sub := refuse
			if w.trust != nil && sub == "" {
				sub = w.trust.dir(real)
			}
			subDirty := dirty || (w.cache != nil && w.cache.dirty[real])
			if err := w.walk(joinName(absDir, name), real, r, depth+1, sub, subDirty); err != nil {
				return err
			}
			continue
		}
		if !isManifestName(name) {
			continue
		}
		link := e.Type()&fs.ModeSymlink != 0
		abs := joinName(absDir, name)
		ref := fileRef{abs: abs, real: real, name: displayName(w.prefix, r), refuse: refuse, link: link}
		if link {
			snap.volatile = append(snap.volatile, ref)
			if linkToDir(real) {
				continue // symlinks to directories are not followed
			}
		}
		if !link && !dirty && w.cache != nil {
			if e, ok := w.cache.get(dirfd, name, real, abs, ref.name, refuse); ok {
				snap.Files = append(snap.Files, e.file)
				if e.stamp.Nlink > 1 {
					snap.volatile = append(snap.volatile, ref)
				}
				continue
			}
		}
		f, ok, st := readFile(abs, real, ref.name, w.trust, refuse, link)
		if !ok {
			continue
		}
		snap.Files = append(snap.Files, f)
		if !link && (st == nil || st.Nlink > 1) {
			snap.volatile = append(snap.volatile, ref)
		}
		if st != nil && w.cache != nil {
			w.cache.next[real] = &cacheEntry{stamp: *st, refuse: refuse, file: f}
		}
	}
	return nil
}

// displayName is the name in messages of the file at rel under the
// manifests path.
func displayName(prefix, rel string) string {
	if prefix != "" {
		return filepath.Join(prefix, rel)
	}
	return rel
}

// linkToDir says whether the symlink real points to a directory (Scan
// does not follow those).
func linkToDir(real string) bool {
	fi, err := os.Stat(real)
	return err == nil && fi.IsDir()
}

// joinName is filepath.Join for a clean dir ("" for none) and a name
// without a separator, without Join's Clean.
func joinName(dir, name string) string {
	switch {
	case dir == "":
		return name
	case strings.HasSuffix(dir, "/"):
		return dir + name
	}
	return dir + "/" + name
}

// readFile reads one manifest, refusing it for reason refuse (or, when tc
// is not nil, for its own ownership and mode, and for a symlink the way
// through it: see trustCheck). link says that the directory entry real
// is a symlink (a ConfigMap-style link to a file); when it is not, real is
// opened without following one. It returns false for a file that is gone
// (deleted between the listing and the read, or a dangling symlink). The
// stamp is that of the regular file read, when real is not a link and the
// result depends on nothing but the stamp, refuse and real: a Loader may
// then reuse the File while the stamp stays the same.
func readFile(abs, real, name string, tc *trustCheck, refuse string, link bool) (File, bool, *sys.Stamp) {
	f := File{Path: abs, Name: name}
	var stamp *sys.Stamp
	fail := func(format string, args ...any) (File, bool, *sys.Stamp) {
		f.Err = &Error{File: name, Msg: fmt.Sprintf(format, args...)}
		f.Data = nil
		f.Hash = ""
		return f, true, stamp
	}
	// O_NONBLOCK: a FIFO named like a manifest must not block the open
	// (and with it the watcher); it is refused as not a regular file.
	flags := os.O_RDONLY | syscall.O_NONBLOCK
	if !link {
		flags |= syscall.O_NOFOLLOW
	}
	fh, err := os.OpenFile(real, flags, 0)
	if !link && errors.Is(err, syscall.ELOOP) {
		// Replaced by a symlink since the directory was listed.
		link = true
		fh, err = os.OpenFile(real, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return f, false, nil
	}
	if err != nil {
		f.unread = resourceError(err)
		return fail("unable to read: %v", unwrapPathError(err))
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		f.unread = resourceError(err)
		return fail("unable to stat: %v", unwrapPathError(err))
	}
	if s, ok := sys.StampOfInfo(fi); ok && !link && fi.Mode().IsRegular() {
		stamp = &s
	}
	if !fi.Mode().IsRegular() {
		return fail("not a regular file")
	}
	if fi.Size() > MaxFileSize {
		return fail("file is %d bytes, larger than the limit of %d (1 MiB); split it", fi.Size(), MaxFileSize)
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		stamp = nil // may not happen again
		f.unread = resourceError(err)
		return fail("unable to read: %v", err)
	}
	if len(data) > MaxFileSize {
		return fail("file is larger than the limit of %d bytes (1 MiB); split it", MaxFileSize)
	}
	sum := sha256.Sum256(data)
	f.Data, f.Hash = data, hex.EncodeToString(sum[:])
	if tc != nil {
		if refuse == "" {
			refuse = untrustedInfo(real, fi)
		}
		if refuse == "" && link {
			// A symlinked file (ConfigMap style): every hop of the way
			// from the directory that holds the link.
			var err error
			if refuse, err = tc.way(filepath.Dir(real), filepath.Base(real)); err != nil && refuse == "" {
				refuse = err.Error()
			}
		}
		if refuse != "" {
			return fail("refused: %s (run with --insecure-manifests to skip this check)", refuse)
		}
	}
	return f, true, stamp
}

// Consistent reports whether every symlink Scan met still points where it
// did: when one moved (a git-sync or ConfigMap swap during the walk), the
// snapshot may mix two revisions and must be taken again.
func (s *Snapshot) Consistent() bool {
	for p, t := range s.links {
		now, err := os.Readlink(p)
		if err != nil || now != t {
			return false
		}
	}
	return true
}
