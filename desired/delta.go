package desired

import (
	"maps"
	"slices"
)

// nextDelta is Next for a Load that read only some files again (the
// Loader's event-driven Load), in time proportional to those files rather
// than to the directory: with 1,000 manifests, Next's walk over every
// file and container took 1.7 ms of a dropped manifest's 9 ms on a 2-core
// host, for a change to one file.
//
// prev must be the Set Next made from the snapshot that snap patches (or
// one Equal to it), with no file in error, and delta the files snap read
// again, by Path (File{} for one gone). It returns false where Next could
// decide otherwise than by applying each file's new content alone: a file
// with an error or read again with one, a name defined twice, a start
// order to check (spec.after), a directory refused by the strict check,
// more than the limit of containers; Next is then the one to ask. The Set
// returned (with whether it differs from prev, as Equal would say) has no
// file in error either, shares with prev everything that did not change,
// and records the names of the files applied (ChangedSince).
func nextDelta(prev Set, snap *Snapshot, delta map[string]File, opts Options) (Set, bool, bool) {
	for _, d := range snap.dirs {
		if d.refuse != "" {
			return Set{}, false, false // a file gone there stands refused
		}
	}
	limit := opts.MaxContainers
	if limit <= 0 {
		limit = MaxContainers
	}
	type parsedFile struct {
		f    *File
		defs []*Container
	}
	var (
		parsed  []parsedFile
		removed []*FileStatus // files gone or parsed again: their names go
	)
	for _, p := range slices.Sorted(maps.Keys(delta)) {
		f := delta[p]
		old := prev.Files[p]
		if f.Path == "" {
			if old != nil {
				removed = append(removed, old)
			}
			continue
		}
		if f.Err != nil {
			return Set{}, false, false
		}
		if old != nil && old.ContentHash == f.Hash {
			continue // carried over as it is, FileStatus included
		}
		defs, errs := Parse(f.Name, f.Data, opts.ParseOptions)
		if len(errs) > 0 {
			return Set{}, false, false
		}
		for _, c := range defs {
			if len(c.After()) > 0 {
				return Set{}, false, false
			}
		}
		if old != nil {
			removed = append(removed, old)
		}
		parsed = append(parsed, parsedFile{&f, defs})
	}
	changed := snap.Revision != prev.Revision
	if len(parsed) == 0 && len(removed) == 0 {
		next := prev
		next.Revision = snap.Revision
		next.from, next.changed = prev.id, nil
		return next, changed, true
	}
	next := Set{Containers: maps.Clone(prev.Containers), Files: maps.Clone(prev.Files), Revision: snap.Revision, from: prev.id}
	if next.Containers == nil {
		next.Containers = map[string]*Container{}
	}
	if next.Files == nil {
		next.Files = map[string]*FileStatus{}
	}
	for _, old := range removed {
		for _, n := range old.Containers {
			if c := next.Containers[n]; c != nil && c.Source == old.Path {
				delete(next.Containers, n)
			}
		}
		next.changed = append(next.changed, old.Containers...)
		delete(next.Files, old.Path)
	}
	for _, pf := range parsed {
		st := &FileStatus{Path: pf.f.Path, ContentHash: pf.f.Hash, Containers: make([]string, 0, len(pf.defs))}
		for _, c := range pf.defs {
			if next.Containers[c.Name] != nil {
				return Set{}, false, false // defined by another file, or twice
			}
			c.Source = pf.f.Path
			next.Containers[c.Name] = c
			st.Containers = append(st.Containers, c.Name)
		}
		next.changed = append(next.changed, st.Containers...)
		next.Files[st.Path] = st
	}
	if len(next.Containers) > limit {
		return Set{}, false, false
	}
	return next, true, true
}

// clean says whether no file of s is in error (nextDelta's condition on
// the Set it starts from).
func clean(s Set) bool {
	for _, f := range s.Files {
		if len(f.Errors) > 0 {
			return false
		}
	}
	return true
}
