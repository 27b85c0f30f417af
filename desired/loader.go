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
	"sort"
	"strings"
	"syscall"
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
// file is refused (File.Err) when it, the directory that holds it, or any
// directory between it and the manifests path is writable by group or
// others or not owned by root, as sshd's StrictModes does; so is every file
// when the manifests path is a symlink whose containing directory fails
// the same test. Directories above the manifests path are not checked.
func Scan(dir string, opts Options) (*Snapshot, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("unable to resolve %s: %w", dir, err)
	}
	snap := &Snapshot{links: map[string]string{}}
	real, err := resolve(abs, snap.links)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
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
	strict := opts.strict()
	var refuse string // reason every file is refused, from the top
	if strict {
		if lfi, err := os.Lstat(abs); err == nil && lfi.Mode()&fs.ModeSymlink != 0 {
			refuse = untrusted(filepath.Dir(abs))
		}
		if refuse == "" {
			refuse = untrusted(real)
		}
	}
	if !fi.IsDir() {
		name := dir
		if opts.DisplayPrefix != "" {
			name = opts.DisplayPrefix
		}
		if f, ok := readFile(abs, real, name, strict, refuse); ok {
			snap.Files = []File{f}
		}
		return snap, nil
	}
	snap.Dirs = []string{real}
	if err := walk(snap, abs, real, "", 0, strict, refuse, opts.DisplayPrefix); err != nil {
		return nil, err
	}
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

func walk(snap *Snapshot, absDir, realDir, rel string, depth int, strict bool, refuse, prefix string) error {
	entries, err := os.ReadDir(realDir)
	if err != nil {
		if depth > 0 && errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked; the watcher rescans
		}
		return fmt.Errorf("unable to read %s: %w", realDir, err)
	}
	for _, e := range entries {
		name := e.Name()
		real := filepath.Join(realDir, name)
		if e.Type()&fs.ModeSymlink != 0 {
			if t, err := os.Readlink(real); err == nil {
				snap.links[real] = t
			}
		}
		if strings.HasPrefix(name, ".") {
			continue
		}
		r := filepath.Join(rel, name)
		if e.IsDir() {
			if depth+1 >= maxDepth {
				continue
			}
			snap.Dirs = append(snap.Dirs, real)
			sub := refuse
			if strict && sub == "" {
				sub = untrusted(real)
			}
			if err := walk(snap, filepath.Join(absDir, name), real, r, depth+1, strict, sub, prefix); err != nil {
				return err
			}
			continue
		}
		if !isManifestName(name) {
			continue
		}
		if e.Type()&fs.ModeSymlink != 0 {
			if fi, err := os.Stat(real); err == nil && fi.IsDir() {
				continue // symlinks to directories are not followed
			}
		}
		display := r
		if prefix != "" {
			display = filepath.Join(prefix, r)
		}
		if f, ok := readFile(filepath.Join(absDir, name), real, display, strict, refuse); ok {
			snap.Files = append(snap.Files, f)
		}
	}
	return nil
}

// readFile reads one manifest, refusing it for reason refuse (or its own
// ownership and mode when strict). It returns false for a file that is gone
// (deleted between the listing and the read, or a dangling symlink).
func readFile(abs, real, name string, strict bool, refuse string) (File, bool) {
	f := File{Path: abs, Name: name}
	fail := func(format string, args ...any) (File, bool) {
		f.Err = &Error{File: name, Msg: fmt.Sprintf(format, args...)}
		f.Data = nil
		f.Hash = ""
		return f, true
	}
	fh, err := os.Open(real)
	if errors.Is(err, fs.ErrNotExist) {
		return f, false
	}
	if err != nil {
		return fail("unable to read: %v", unwrapPathError(err))
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return fail("unable to stat: %v", unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return fail("not a regular file")
	}
	if fi.Size() > MaxFileSize {
		return fail("file is %d bytes, larger than the limit of %d (1 MiB); split it", fi.Size(), MaxFileSize)
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return fail("unable to read: %v", err)
	}
	if len(data) > MaxFileSize {
		return fail("file is larger than the limit of %d bytes (1 MiB); split it", MaxFileSize)
	}
	sum := sha256.Sum256(data)
	f.Data, f.Hash = data, hex.EncodeToString(sum[:])
	if strict {
		if refuse == "" {
			refuse = untrustedInfo(real, fi)
		}
		if refuse == "" {
			// A symlinked file (ConfigMap style): its real directory too.
			if target, err := filepath.EvalSymlinks(real); err == nil && filepath.Dir(target) != filepath.Dir(real) {
				refuse = untrusted(filepath.Dir(target))
			}
		}
		if refuse != "" {
			return fail("refused: %s (run with --insecure-manifests to skip this check)", refuse)
		}
	}
	return f, true
}

// untrusted returns why path may not hold manifests ("" when it may).
func untrusted(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Sprintf("unable to check %s: %v", path, unwrapPathError(err))
	}
	return untrustedInfo(path, fi)
}

func untrustedInfo(path string, fi fs.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		return fmt.Sprintf("%s is owned by uid %d, not root", path, st.Uid)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
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
	st       *FileStatus
	fresh    []*Container // the file's new definitions, when valid
	lastGood []*Container // from prev
	useFresh bool
}

// Next computes the Set that follows prev, given what Scan read. It does no
// I/O beyond Parse's host checks.
//
//   - A file that is valid applies whole.
//   - A file that cannot be read, is refused or has any error applies
//     nothing: the containers it defined in prev stay as they were, and its
//     errors are reported in Files.
//   - A file that is gone removes its containers.
//   - Two files that define the same name both count as invalid, with an
//     error naming the other; the name keeps its definition from prev, if
//     any.
//   - Files that would take the directory beyond MaxContainers are
//     invalid (in path order).
//
// A file whose content hash is the one prev recorded, without errors, is not
// parsed again: its containers are carried over.
func Next(prev Set, snap *Snapshot, opts Options) Set {
	limit := opts.MaxContainers
	if limit <= 0 {
		limit = MaxContainers
	}
	var files []File
	if snap != nil {
		files = append(files, snap.Files...)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	cands := make([]*cand, 0, len(files))
	for _, f := range files {
		c := &cand{st: &FileStatus{Path: f.Path, ContentHash: f.Hash}}
		if old := prev.Files[f.Path]; old != nil {
			for _, n := range old.Containers {
				if pc := prev.Containers[n]; pc != nil && pc.Source == f.Path {
					c.lastGood = append(c.lastGood, pc)
				}
			}
			if f.Err == nil && old.ContentHash == f.Hash && len(old.Errors) == 0 && len(c.lastGood) == len(old.Containers) {
				c.fresh, c.useFresh = c.lastGood, true
				cands = append(cands, c)
				continue
			}
		}
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
				}
				c.fresh, c.useFresh = parsed, true
			}
		}
		cands = append(cands, c)
	}

	contribution := func(c *cand) []*Container {
		if c.useFresh {
			return c.fresh
		}
		return c.lastGood
	}
	// Resolve duplicates: a file in a conflict falls back to its last good
	// definitions, which may remove the conflict or expose another.
	for changed := true; changed; {
		changed = false
		owners := map[string][]*cand{}
		for _, c := range cands {
			for _, ct := range contribution(c) {
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
				c.st.Errors = append(c.st.Errors, &Error{
					File: nameOf(c.st.Path, files), Line: line, Field: "metadata.name",
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
	}

	next := Set{
		Containers: map[string]*Container{},
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
				c.st.Errors = append(c.st.Errors, &Error{File: nameOf(c.st.Path, files), Msg: fmt.Sprintf("the directory would define more than %d containers; this file is not applied", limit)})
				c.useFresh = false
			}
			contrib = c.lastGood
			if total+len(contrib) > limit {
				contrib = nil
			}
		}
		total += len(contrib)
		c.st.Containers = []string{}
		for _, ct := range contrib {
			next.Containers[ct.Name] = ct
			c.st.Containers = append(c.st.Containers, ct.Name)
		}
		next.Files[c.st.Path] = c.st
	}
	return next
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

func nameOf(path string, files []File) string {
	for _, f := range files {
		if f.Path == path {
			return f.Name
		}
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
		if g == nil || f.ContentHash != g.ContentHash || !equalStrings(f.Containers, g.Containers) || len(f.Errors) != len(g.Errors) {
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
		if d == nil || c.Hash != d.Hash || c.Source != d.Source || c.Doc != d.Doc || !equalMaps(c.Labels, d.Labels) {
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
type Loader struct {
	dir  string
	opts Options
	last Set
	dirs []string
}

// NewLoader returns a Loader for dir whose first Load starts from prev
// (the empty Set for a fresh start).
func NewLoader(dir string, opts Options, prev Set) *Loader {
	return &Loader{dir: dir, opts: opts, last: prev}
}

// Last returns the last Set Load produced (or the one NewLoader was given).
func (l *Loader) Last() Set { return l.last }

// Load scans the directory and returns the next Set and whether it differs
// from the last one. A scan that met a symlink swap is taken again (up to
// five times) so that a Set never mixes two revisions. When the directory
// does not exist it returns an error wrapping ErrNotExist and changes
// nothing: deciding what a missing directory means is the caller's.
func (l *Loader) Load() (Set, bool, error) {
	var snap *Snapshot
	var err error
	for try := 0; ; try++ {
		snap, err = Scan(l.dir, l.opts)
		if err == nil && snap.Consistent() {
			break
		}
		if err != nil && (errors.Is(err, ErrNotExist) || try == 4) {
			return l.last, false, err
		}
		if try == 4 {
			return l.last, false, fmt.Errorf("%s kept changing while it was read", l.dir)
		}
	}
	l.dirs = snap.Dirs
	next := Next(l.last, snap, l.opts)
	changed := !next.Equal(l.last)
	if changed {
		l.last = next
	}
	return l.last, changed, nil
}

// Dirs returns the real directories the last successful Load walked.
func (l *Loader) Dirs() []string { return l.dirs }

// Reset replaces the last Set (after a missing directory's grace period
// ran out, the watcher starts again from the empty Set).
func (l *Loader) Reset(s Set) { l.last = s }
