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
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Options configure loading.
type Options struct {
	ParseOptions
	// InsecureManifests turns off the ownership and mode check (see
	// Scan). The check only applies when the process runs as root.
	InsecureManifests bool
	// DisplayPrefix is joined before the path relative to the manifests
	// directory in error messages ("" gives "web.yaml"; the validate command
	// passes the argument as typed).
	DisplayPrefix string
	// MaxContainers overrides the limit of MaxContainers (tests).
	MaxContainers int

	// euid replaces os.Geteuid (tests); nil means os.Geteuid.
	euid func() int
}

func (o *Options) strict() bool {
	if o.InsecureManifests {
		return false
	}
	if o.euid != nil {
		return o.euid() == 0
	}
	return os.Geteuid() == 0
}

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
				if e.stamp.nlink > 1 {
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
		if !link && (st == nil || st.nlink > 1) {
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
func readFile(abs, real, name string, tc *trustCheck, refuse string, link bool) (File, bool, *fileStamp) {
	f := File{Path: abs, Name: name}
	var stamp *fileStamp
	fail := func(format string, args ...any) (File, bool, *fileStamp) {
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
		return fail("unable to read: %v", unwrapPathError(err))
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return fail("unable to stat: %v", unwrapPathError(err))
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && !link && fi.Mode().IsRegular() {
		s := fileStamp{
			dev: st.Dev, ino: st.Ino, size: st.Size,
			mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
			mode: st.Mode, uid: st.Uid, nlink: uint64(st.Nlink),
		}
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

// fileStamp is what a stat says about a regular file that can change what
// reading it gives: where it is (dev, ino), its size and times, and the
// mode and owner the strict check looks at. nlink says whether it can be
// written through another path (a change of it changes ctime too).
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns
	mode, uid    uint32
	nlink        uint64
}

// stampOf is the stamp of st (readFile builds it from a syscall.Stat_t,
// the same fields).
func stampOf(st *unix.Stat_t) fileStamp {
	return fileStamp{
		dev: st.Dev, ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
		mode: st.Mode, uid: st.Uid, nlink: uint64(st.Nlink),
	}
}

// cacheEntry is the last read of one regular manifest file.
type cacheEntry struct {
	stamp  fileStamp
	refuse string // the reason from the directories it was read under
	file   File
}

// scanCache is what one Loader.Load gives scan: the entries of the last
// Load, the paths marked dirty since, and the entries of this one.
type scanCache struct {
	old   map[string]*cacheEntry // by real path
	dirty map[string]bool
	next  map[string]*cacheEntry
}

// get returns the cached read of the regular file real (the entry base in
// the directory open as dirfd) when it may stand for a read: not marked
// dirty, read under the same refuse reason and as the same path, and a
// fresh lstat gives the stamp it was read with.
func (c *scanCache) get(dirfd int, base, real, abs, name, refuse string) (*cacheEntry, bool) {
	e := c.old[real]
	if e == nil || c.dirty[real] || e.refuse != refuse || e.file.Path != abs || e.file.Name != name {
		return nil, false
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || stampOf(&st) != e.stamp {
		return nil, false
	}
	c.next[real] = e
	return e, true
}

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

// cand is one file's candidate contribution to the next Set.
type cand struct {
	st *FileStatus
	// shared: st is prev's own FileStatus (the file is unchanged), to be
	// copied before anything in it changes.
	shared   bool
	fresh    []*Container // the file's new definitions, when valid
	lastGood []*Container // from prev
	useFresh bool
}

// status returns c's FileStatus for a change.
func (c *cand) status() *FileStatus {
	if c.shared {
		st := *c.st
		c.st, c.shared = &st, false
	}
	return c.st
}

// Next computes the Set that follows prev, given what Scan read. It does no
// I/O beyond Parse's host checks.
//
//   - A file that is valid applies whole.
//   - A file that cannot be read, is refused or has any error applies
//     nothing: the containers it defined in prev stay as they were, and its
//     errors are reported in Files.
//   - A file that is gone removes its containers, except in a directory
//     that fails the strict check (see Scan): there it stands as a refused
//     file, its containers kept, as it would if it were still there (whoever
//     can write the directory must not be able to remove containers).
//   - Two files that define the same name both count as invalid, with an
//     error naming the other; the name keeps its definition from prev, if
//     any.
//   - Files that would take the directory beyond MaxContainers are
//     invalid (in path order).
//
// A file whose content hash is the one prev recorded, without errors, is not
// parsed again: its containers are carried over, and so is its FileStatus
// when nothing in it changes (Sets share what did not change; neither is
// modified once made).
func Next(prev Set, snap *Snapshot, opts Options) Set {
	limit := opts.MaxContainers
	if limit <= 0 {
		limit = MaxContainers
	}
	var files []File
	onlyParsed := true // see below
	if snap != nil {
		files = snap.Files
		if !strictlySorted(files) {
			files = append([]File(nil), files...)
			sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
			onlyParsed = strictlySorted(files)
		}
		if gone := snap.refusedGone(prev, files, opts.DisplayPrefix); len(gone) > 0 {
			files = append(append(make([]File, 0, len(files)+len(gone)), files...), gone...)
			slices.SortFunc(files, byPath)
		}
	}
	// Two files can define the same name only when one of them was parsed
	// now (its name is then in parsedNames): every other file contributes
	// containers of prev whose Source is that file. That holds when no
	// Path comes twice and prev's files say who they are and list each
	// name once (always so for a Set made by Next); otherwise (a Snapshot
	// or a Set made by hand) every name is looked at.
	parsedNames := map[string]bool{}
	slab := make([]cand, len(files))
	lgBuf := make([]*Container, 0, len(prev.Containers))
	cands := make([]*cand, 0, len(files))
	for i := range files {
		f := &files[i]
		c := &slab[i]
		cands = append(cands, c)
		if old := prev.Files[f.Path]; old != nil {
			if old.Path != f.Path || repeats(old.Containers) {
				onlyParsed = false
			}
			var all bool
			c.lastGood, all, lgBuf = lastGood(prev, old, lgBuf)
			if f.Err == nil && all && old.ContentHash == f.Hash && len(old.Errors) == 0 {
				c.fresh, c.useFresh = c.lastGood, true
				if old.Path == f.Path && old.Errors == nil && old.Containers != nil {
					c.st, c.shared = old, true
				} else {
					c.st = &FileStatus{Path: f.Path, ContentHash: f.Hash}
				}
				continue
			}
		}
		c.st = &FileStatus{Path: f.Path, ContentHash: f.Hash}
		switch {
		case f.Err != nil:
			c.st.Errors = []*Error{f.Err}
		default:
			parsed, errs := Parse(f.Name, f.Data, opts.ParseOptions)
			if len(errs) > 0 {
				c.st.Errors = errs
			} else {
				for _, pc := range parsed {
					pc.Source = f.Path
					parsedNames[pc.Name] = true
				}
				c.fresh, c.useFresh = parsed, true
			}
		}
	}

	contribution := func(c *cand) []*Container {
		if c.useFresh {
			return c.fresh
		}
		return c.lastGood
	}
	// Resolve duplicates: a file in a conflict falls back to its last good
	// definitions, which may remove the conflict or expose another.
	for changed := !onlyParsed || len(parsedNames) > 0; changed; {
		changed = false
		owners := map[string][]*cand{}
		for _, c := range cands {
			for _, ct := range contribution(c) {
				if onlyParsed && !parsedNames[ct.Name] {
					continue
				}
				owners[ct.Name] = append(owners[ct.Name], c)
			}
		}
		names := make([]string, 0, len(owners))
		for n, list := range owners {
			if len(list) > 1 {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			list := owners[n]
			fresh := 0
			for _, c := range list {
				if c.useFresh {
					fresh++
				}
			}
			for _, c := range list {
				if !c.useFresh {
					continue
				}
				var others []string
				for _, o := range list {
					if o != c {
						others = append(others, where(o, n, files))
					}
				}
				line := 0
				for _, ct := range c.fresh {
					if ct.Name == n {
						line = ct.Line
					}
				}
				st := c.status()
				st.Errors = append(st.Errors, &Error{
					File: nameOf(st.Path, files), Line: line, Field: "metadata.name",
					Msg: fmt.Sprintf("%q is also defined in %s; names must be unique in the directory, and neither definition is applied", n, strings.Join(others, ", ")),
				})
				c.useFresh = false
				changed = true
			}
			if fresh == 0 {
				// Only last-good definitions collide (prev itself had the
				// conflict): keep the one prev applied.
				keep := ""
				if pc := prev.Containers[n]; pc != nil {
					keep = pc.Source
				}
				for _, c := range list {
					if c.st.Path != keep {
						c.lastGood = without(c.lastGood, n)
						changed = true
					}
				}
			}
		}
		if !changed {
			// Names are unique now: check the start order across files.
			changed = checkAfter(cands, files, parsedNames, contribution)
		}
	}

	next := Set{
		Containers: make(map[string]*Container, max(len(prev.Containers), len(cands))),
		Files:      make(map[string]*FileStatus, len(cands)),
	}
	if snap != nil {
		next.Revision = snap.Revision
	}
	total := 0
	for _, c := range cands {
		contrib := contribution(c)
		if total+len(contrib) > limit {
			if c.useFresh {
				st := c.status()
				st.Errors = append(st.Errors, &Error{File: nameOf(st.Path, files), Msg: fmt.Sprintf("the directory would define more than %d containers; this file is not applied", limit)})
				c.useFresh = false
			}
			contrib = c.lastGood
			if total+len(contrib) > limit {
				contrib = nil
			}
		}
		total += len(contrib)
		if !c.shared || !sameNames(contrib, c.st.Containers) {
			st := c.status()
			st.Containers = make([]string, 0, len(contrib))
			for _, ct := range contrib {
				st.Containers = append(st.Containers, ct.Name)
			}
		}
		for _, ct := range contrib {
			next.Containers[ct.Name] = ct
		}
		next.Files[c.st.Path] = c.st
	}
	return next
}

// refusedGone returns a refused File for each file of prev that the
// snapshot does not have and whose directory (or, when that is gone too,
// the nearest directory above it that was walked) fails the strict check.
// files are the snapshot's files in Path order.
func (s *Snapshot) refusedGone(prev Set, files []File, prefix string) []File {
	if len(s.dirs) == 0 || len(prev.Files) == 0 {
		return nil
	}
	var refused map[string]string // walked directories by abs path: the reason they fail
	for _, d := range s.dirs {
		if d.refuse != "" {
			if refused == nil {
				refused = map[string]string{}
			}
			refused[d.abs] = d.refuse
		}
	}
	if refused == nil {
		return nil
	}
	walked := make(map[string]bool, len(s.dirs))
	for _, d := range s.dirs {
		walked[d.abs] = true
	}
	var out []File
	for p := range prev.Files {
		if _, ok := slices.BinarySearchFunc(files, p, func(f File, p string) int { return strings.Compare(f.Path, p) }); ok {
			continue
		}
		if !strings.HasPrefix(p, s.abs+"/") {
			continue
		}
		why := ""
		for d := filepath.Dir(p); ; d = filepath.Dir(d) {
			if walked[d] {
				why = refused[d]
				break
			}
			if d == s.abs || len(d) <= len(s.abs) {
				break
			}
		}
		if why == "" {
			continue
		}
		name := p
		if rel, err := filepath.Rel(s.abs, p); err == nil {
			name = displayName(prefix, rel)
		}
		out = append(out, File{Path: p, Name: name, Err: &Error{File: name, Msg: fmt.Sprintf("refused: %s (run with --insecure-manifests to skip this check); the file is gone, but a directory that fails this check cannot remove containers: its containers are kept", why)}})
	}
	return out
}

// lastGood returns the containers of prev that file old still defines, and
// whether that is all of them. The list takes its room from the spare
// capacity of buf while there is some (one allocation for all files);
// buf is returned grown by it.
func lastGood(prev Set, old *FileStatus, buf []*Container) ([]*Container, bool, []*Container) {
	n := len(old.Containers)
	var out []*Container
	fromBuf := n > 0 && n <= cap(buf)-len(buf)
	if fromBuf {
		out = buf[len(buf) : len(buf) : len(buf)+n] // appends stay in buf
	}
	for _, name := range old.Containers {
		if pc := prev.Containers[name]; pc != nil && pc.Source == old.Path {
			out = append(out, pc)
		}
	}
	if fromBuf {
		buf = buf[:len(buf)+len(out)]
	}
	if len(out) == 0 {
		out = nil
	}
	return out, len(out) == n, buf
}

// repeats says whether a name comes twice in names.
func repeats(names []string) bool {
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[i] == names[j] {
				return true
			}
		}
	}
	return false
}

// sameNames says whether list holds the containers named names, in order.
func sameNames(list []*Container, names []string) bool {
	if len(list) != len(names) {
		return false
	}
	for i, c := range list {
		if c.Name != names[i] {
			return false
		}
	}
	return true
}

// where names the file (and line) where c defines name.
func where(c *cand, name string, files []File) string {
	file := nameOf(c.st.Path, files)
	for _, ct := range append(append([]*Container(nil), c.fresh...), c.lastGood...) {
		if ct.Name == name && ct.Line > 0 {
			return fmt.Sprintf("%s:%d", file, ct.Line)
		}
	}
	return file
}

// nameOf returns the Name of the first file at path (files are in Path
// order), or path.
func nameOf(path string, files []File) string {
	i, ok := slices.BinarySearchFunc(files, path, func(f File, p string) int { return strings.Compare(f.Path, p) })
	if ok {
		return files[i].Name
	}
	return path
}

func without(list []*Container, name string) []*Container {
	var out []*Container
	for _, c := range list {
		if c.Name != name {
			out = append(out, c)
		}
	}
	return out
}

// Errors returns every file's errors, sorted by file and line.
func (s Set) Errors() []*Error {
	var out []*Error
	for _, f := range s.Files {
		out = append(out, f.Errors...)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].File != out[j].File {
			return out[i].File < out[j].File
		}
		return out[i].Line < out[j].Line
	})
	return out
}

// Equal reports whether two Sets would lead to the same work: the same
// revision, the same files with the same content and errors, and the same
// containers with the same hashes and sources.
func (s Set) Equal(o Set) bool {
	if s.Revision != o.Revision || len(s.Files) != len(o.Files) || len(s.Containers) != len(o.Containers) {
		return false
	}
	for p, f := range s.Files {
		g := o.Files[p]
		if g == nil {
			return false
		}
		if f == g {
			continue // shared by two Sets from Next
		}
		if f.ContentHash != g.ContentHash || !equalStrings(f.Containers, g.Containers) || len(f.Errors) != len(g.Errors) {
			return false
		}
		for i := range f.Errors {
			if *f.Errors[i] != *g.Errors[i] {
				return false
			}
		}
	}
	for n, c := range s.Containers {
		d := o.Containers[n]
		if d == nil {
			return false
		}
		if c == d {
			continue
		}
		if c.Hash != d.Hash || c.Source != d.Source || c.Doc != d.Doc || !equalMaps(c.Labels, d.Labels) || !sameOutsideHash(c, d) {
			return false
		}
	}
	return true
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Loader keeps the last Set it produced and turns a manifests directory
// into the next one. It is not safe for concurrent use.
//
// It keeps the last read of each regular manifest file (not a symlink) and
// the stamp of the stat it was read with (device, inode, size, mtime,
// ctime, mode, owner, link count). A full Load walks the directories and
// reuses that read, without opening the file, when a fresh stat gives the
// same stamp, the file was read under the same directories' verdict
// (strict mode), and it was not marked dirty since (MarkDirty).
// Timestamps come from a coarse clock, so a rewrite of the same size
// within one clock tick keeps the stamp: the caller marks every path an
// event names dirty, and Forgets everything when events may have been
// lost. Symlinked files are read every time.
//
// A Load whose marks (at least one) all name regular manifest files (lstat,
// not through a symlink) directly inside directories the last successful
// Load walked, none of them the manifests path itself nor a directory or
// symlink it met, is event-driven: it neither lists a directory nor stats
// the other files. It takes the last Load's files, reads the marked ones
// again (a new one is added, one gone is dropped, one rewritten is
// replaced), as well as the entries no read of which can be reused
// (symlinks, files with more than one hard link, files whose read failed),
// and keeps every other file as it was; it checks that the manifests path
// still resolves where it did and, after the reads, that every symlink the
// last walk met still points where it did. Any other Load (no marks, a
// mark on a directory, on the manifests path or on a symlink, the first
// Load, one after a Forget or a failed Load) walks every directory.
//
// The event-driven Load relies on the caller's marks for every change to
// a file it does not read, which holds for Watch: it watches every
// directory the last walk read (and reads again, unmarked, once a new
// watch is in place, for what changed between the listing and the watch),
// and the kernel names a regular file in every event of a change to it
// through that directory: a write or truncation (IN_MODIFY), a chmod, a
// chown or a time change (IN_ATTRIB), a creation, a link or a rename in or
// out (IN_CREATE, IN_MOVED_TO, IN_MOVED_FROM), a removal (IN_DELETE).
// What has no event there is covered otherwise: a change through another
// hard link (such files are read every time), a symlink's target (read
// every time), a writable shared mapping's stores and a change made on
// another host of a network filesystem (none of the above; Watch's
// periodic Resync sees the changed stat and Forgets), and lost events (an
// inotify overflow: Watch Forgets).
type Loader struct {
	dir   string
	opts  Options
	last  Set
	dirs  []string
	cache map[string]*cacheEntry // by real path; nil after Forget
	dirty map[string]bool
	// prev is the last successful Load's snapshot, Files in Path order,
	// for the event-driven Load; nil whenever cache is.
	prev  *Snapshot
	walks int // Loads that walked the directories (tests)
}

// NewLoader returns a Loader for dir whose first Load starts from prev
// (the empty Set for a fresh start).
func NewLoader(dir string, opts Options, prev Set) *Loader {
	return &Loader{dir: dir, opts: opts, last: prev}
}

// Last returns the last Set Load produced (or the one NewLoader was given).
func (l *Loader) Last() Set { return l.last }

// Load reads the directory and returns the next Set and whether it differs
// from the last one (see Loader for what it reads). A scan that met a
// symlink swap is taken again (up to five times) so that a Set never mixes
// two revisions. When the directory does not exist it returns an error
// wrapping ErrNotExist and changes nothing: deciding what a missing
// directory means is the caller's.
//
// The paths marked dirty are taken when Load starts: a mark made while it
// runs applies to the next Load.
func (l *Loader) Load() (Set, bool, error) {
	dirty := l.dirty
	l.dirty = nil
	snap, updates, ok := l.marked(dirty)
	if ok {
		for real, e := range updates {
			if e == nil {
				delete(l.cache, real)
			} else {
				l.cache[real] = e
			}
		}
	} else {
		var err error
		if snap, err = l.scan(dirty); err != nil {
			l.cache, l.prev = nil, nil // the dirty marks are spent
			return l.last, false, err
		}
	}
	l.prev = snap
	l.dirs = snap.Dirs
	next := Next(l.last, snap, l.opts)
	changed := !next.Equal(l.last)
	if changed {
		l.last = next
	}
	return l.last, changed, nil
}

// scan is the full Load: a walk of every directory, reusing the reads of
// files whose stamp did not change and that are not marked dirty.
func (l *Loader) scan(dirty map[string]bool) (*Snapshot, error) {
	c := &scanCache{old: l.cache, dirty: dirty}
	l.walks++
	for try := 0; ; try++ {
		c.next = make(map[string]*cacheEntry, len(c.old))
		snap, err := scan(l.dir, l.opts, c)
		if err == nil && snap.Consistent() {
			l.cache = c.next
			return snap, nil
		}
		if err != nil && (errors.Is(err, ErrNotExist) || try == 4) {
			return nil, err
		}
		if try == 4 {
			return nil, fmt.Errorf("%s kept changing while it was read", l.dir)
		}
	}
}

// marked is the event-driven Load (see Loader): the next snapshot and the
// changes to the cache (nil: drop the entry), or false when the Load must
// walk every directory.
func (l *Loader) marked(dirty map[string]bool) (*Snapshot, map[string]*cacheEntry, bool) {
	p := l.prev
	if p == nil || l.cache == nil || len(dirty) == 0 || len(p.dirs) == 0 {
		return nil, nil, false
	}
	if real, err := filepath.EvalSymlinks(p.abs); err != nil || real != p.Root {
		return nil, nil, false
	}
	var tc *trustCheck
	if l.opts.strict() {
		if p.trust == nil {
			p.trust = map[string]bool{}
		}
		tc = &trustCheck{under: p.abs, dirs: p.trust}
	}
	reads := make(map[string]File, len(dirty)+len(p.volatile)) // by Path; Path "" for gone
	updates := make(map[string]*cacheEntry, len(dirty))
	var volatile []fileRef
	// read reads the regular file ref (lstat first: a file that turned
	// into anything else takes the full path).
	read := func(ref fileRef) bool {
		var st unix.Stat_t
		if err := unix.Lstat(ref.real, &st); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				return false
			}
			reads[ref.abs] = File{}
			updates[ref.real] = nil
			return true
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return false
		}
		f, ok, stamp := readFile(ref.abs, ref.real, ref.name, tc, ref.refuse, false)
		switch {
		case !ok:
			f = File{} // removed since the lstat
		case stamp == nil && f.Err == nil:
			return false // replaced by a symlink since the lstat
		case stamp == nil || stamp.nlink > 1:
			volatile = append(volatile, ref)
		}
		reads[ref.abs] = f
		updates[ref.real] = nil
		if stamp != nil {
			updates[ref.real] = &cacheEntry{stamp: *stamp, refuse: ref.refuse, file: f}
		}
		return true
	}
	for path := range dirty {
		if path == p.abs || path == p.Root {
			return nil, nil, false
		}
		if _, ok := p.dirs[path]; ok {
			return nil, nil, false // a directory walked: its listing may have changed
		}
		if _, ok := p.links[path]; ok {
			return nil, nil, false
		}
		base := filepath.Base(path)
		d, ok := p.dirs[filepath.Dir(path)]
		if !ok || !isManifestName(base) {
			return nil, nil, false
		}
		rel := joinName(d.rel, base)
		ref := fileRef{abs: joinName(d.abs, base), real: path, name: displayName(l.opts.DisplayPrefix, rel), refuse: d.refuse}
		if !read(ref) {
			return nil, nil, false
		}
	}
	for _, ref := range p.volatile {
		if _, done := reads[ref.abs]; done {
			continue
		}
		if !ref.link {
			if !read(ref) {
				return nil, nil, false
			}
			continue
		}
		volatile = append(volatile, ref)
		if linkToDir(ref.real) {
			reads[ref.abs] = File{}
			continue
		}
		f, ok, _ := readFile(ref.abs, ref.real, ref.name, tc, ref.refuse, true)
		if !ok {
			f = File{} // a dangling link
		}
		reads[ref.abs] = f
	}
	if !p.Consistent() {
		return nil, nil, false
	}

	// p is dropped once this Load succeeds: its Files are patched in place.
	files := p.Files
	for path, r := range reads {
		i, found := slices.BinarySearchFunc(files, path, func(f File, path string) int { return strings.Compare(f.Path, path) })
		switch {
		case r.Path == "" && found:
			files = slices.Delete(files, i, i+1)
		case r.Path == "":
		case found:
			files[i] = r
		default:
			files = slices.Insert(files, i, r)
		}
	}
	p.Files = nil
	return &Snapshot{
		Files:    files,
		Dirs:     p.Dirs,
		Revision: revision(p.Root),
		Root:     p.Root,
		links:    p.links,
		trust:    p.trust,
		abs:      p.abs,
		dirs:     p.dirs,
		volatile: volatile,
	}, updates, true
}

// MarkDirty says that path may have changed in a way its stat does not
// show: the next Load reads it again, and every file under it when it is
// a directory. path is as an inotify watch on a directory Dirs returned
// (or on the one that holds the manifests path) names it.
func (l *Loader) MarkDirty(path string) {
	if l.cache == nil {
		return // everything is read anyway
	}
	if l.dirty == nil {
		l.dirty = map[string]bool{}
	}
	l.dirty[filepath.Clean(path)] = true
}

// Forget drops every kept read: the next Load reads every file, as after
// lost events (an inotify overflow) and for the periodic full re-read.
func (l *Loader) Forget() {
	l.cache = nil
	l.dirty = nil
	l.prev = nil
}

// Dirs returns the real directories the last successful Load walked.
func (l *Loader) Dirs() []string { return l.dirs }

// trustDirs returns the directories the strict check of the last
// successful Load looked at (see trustCheck), for the watcher's resync.
func (l *Loader) trustDirs() []string {
	if l.prev == nil {
		return nil
	}
	out := make([]string, 0, len(l.prev.trust))
	for d := range l.prev.trust {
		out = append(out, d)
	}
	return out
}

// Reset replaces the last Set (after a missing directory's grace period
// ran out, the watcher starts again from the empty Set).
func (l *Loader) Reset(s Set) { l.last = s }
