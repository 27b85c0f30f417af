package desired

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
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

// cacheEntry is the last read of one regular manifest file.
type cacheEntry struct {
	stamp  sys.Stamp
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
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || sys.StampOf(&st) != e.stamp {
		return nil, false
	}
	c.next[real] = e
	return e, true
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
	prev *Snapshot
	// unread are the files the last Load could not read for a reason of
	// the host's, and unreadErr why (see Unread).
	unread    []string
	unreadErr error
	walks     int // Loads that walked the directories (tests)
	// clean: no file of last is in error, and last is what Next made from
	// prev (or Equal to it): an event-driven Load then applies the files
	// it read alone when it can (nextDelta).
	clean  bool
	deltas int // Loads that did (tests)
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
	delta := ok && l.clean
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
			l.cache, l.prev, l.unread, l.unreadErr = nil, nil, nil, nil // the dirty marks are spent
			l.clean = false
			return l.last, false, err
		}
	}
	l.prev = snap
	l.dirs = snap.Dirs
	l.unread, l.unreadErr = unreadFiles(snap)
	var next Set
	var changed bool
	if delta {
		next, changed, delta = nextDelta(l.last, snap, snap.delta, l.opts)
	}
	if delta {
		l.deltas++
	} else {
		next = Next(l.last, snap, l.opts)
		changed = !next.Equal(l.last)
	}
	snap.delta = nil
	// An unchanged Next is Equal to the last Set: as clean as it.
	l.clean = delta || clean(next)
	if changed {
		next.id, next.clean = new(setID), l.clean
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
		case stamp == nil || stamp.Nlink > 1:
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
		delta:    reads,
	}, updates, true
}

// Unread returns the files the last Load could not read for a reason of
// the host's, not of the file (too many open files, no memory, an I/O
// error: see resourceError), as paths to MarkDirty, and their errors
// joined: their last content stays in force (see Next) until a Load reads
// them, which the caller is to ask for again before long, events or not.
func (l *Loader) Unread() ([]string, error) { return l.unread, l.unreadErr }

// unreadFiles returns the real paths of snap's files that were not read
// for a reason of the host's, and their errors. Each is among the entries
// read again at every Load (a failed read leaves no stamp to reuse); when
// the manifests path is a single file, its own path is returned (a mark
// there reads it again).
func unreadFiles(snap *Snapshot) ([]string, error) {
	var out []string
	var errs []error
	if len(snap.dirs) == 0 {
		for _, f := range snap.Files {
			if f.unread {
				out, errs = append(out, snap.Root), append(errs, f.Err)
			}
		}
		return out, errors.Join(errs...)
	}
	for _, ref := range snap.volatile {
		i, ok := slices.BinarySearchFunc(snap.Files, ref.abs, func(f File, path string) int { return strings.Compare(f.Path, path) })
		if ok && snap.Files[i].unread {
			out, errs = append(out, ref.real), append(errs, snap.Files[i].Err)
		}
	}
	return out, errors.Join(errs...)
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
func (l *Loader) Reset(s Set) { l.last, l.clean = s, false }
