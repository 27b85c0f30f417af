package desired

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

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
//     errors are reported in Files. A file not read for a reason of the
//     host's (too many open files, no memory, an I/O error: see
//     resourceError) keeps the content hash prev recorded as well.
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
		old := prev.Files[f.Path]
		if old != nil {
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
			if f.unread && old != nil {
				// Not read, for a reason of the host's: the last
				// content read stays in force, with its containers.
				c.st.ContentHash = old.ContentHash
			}
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
