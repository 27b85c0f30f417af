package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/imageref"
)

// Garbage collection: the store frees what the caller says nobody uses.
// Whether an image is in use is the caller's fact (InUse: the daemon's
// desired set and its containers' records); the store only orders the
// references it may remove, least recently used first, and removes them
// one at a time, each removal taking the blobs and layers that no
// remaining reference needs with it (Remove's collect: a layer shared with
// a kept image stays).

// Defaults of the garbage collection (the daemon's --image-gc-high,
// --image-gc-low and --image-min-age), those of kubelet's image GC but
// for the minimum age.
const (
	DefaultGCHighPercent = 85
	DefaultGCLowPercent  = 80
	DefaultGCMinAge      = 2 * time.Minute
)

// Usage is the file system that holds the store, as statfs(2) says.
type Usage struct {
	// Path is the store's root.
	Path string
	// Total is the file system's size, Free what is free of it for root,
	// Avail what is free for others (Free less the reserved blocks), in
	// bytes.
	Total, Free, Avail uint64
}

// UsedPercent is the part of the file system in use, as df(1) shows it:
// used / (used + available), where used = Total − Free; the blocks
// reserved for root count as neither.
func (u Usage) UsedPercent() float64 {
	used := u.Total - u.Free
	if used+u.Avail == 0 {
		return 0
	}
	return 100 * float64(used) / float64(used+u.Avail)
}

// Usage reads the usage of the file system that holds the store.
func (s *Store) Usage() (Usage, error) {
	var st unix.Statfs_t
	if err := ignoringEINTR(func() error { return unix.Statfs(s.root, &st) }); err != nil {
		return Usage{}, fmt.Errorf("unable to read the usage of %s: %w", s.root, os.NewSyscallError("statfs", err))
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return Usage{Path: s.root, Total: st.Blocks * bs, Free: st.Bfree * bs, Avail: st.Bavail * bs}, nil
}

// Root is the store's root directory (absolute).
func (s *Store) Root() string { return s.root }

// Size is the disk space the store takes: the allocated blocks of every
// file under its root, each hard-linked file once, without crossing into
// another mount.
func (s *Store) Size() (int64, error) {
	return treeAllocated(s.root), nil
}

// allocated is the disk space of one file (0 if it cannot be read).
func allocated(path string) int64 {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// treeAllocated is du -s --one-file-system of path, in bytes: the
// allocated blocks of everything under it, hard links counted once.
// Entries that vanish or cannot be read count for nothing.
func treeAllocated(path string) int64 {
	var root unix.Stat_t
	if err := unix.Lstat(path, &root); err != nil {
		return 0
	}
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	var total int64
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone or unreadable: nothing to count
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		if st.Dev != root.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if st.Nlink > 1 && !d.IsDir() {
			k := ino{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total
}

// InUse is what the caller says is in use: no reference it names, and no
// reference that records a digest it names, is removed by GC or Prune.
type InUse struct {
	// Refs are image references as manifests and records name them
	// (normalized here). A reference by digest also covers a tag of the
	// same repository that records that digest.
	Refs []string
	// Digests are manifest digests (or the digests of the indexes they
	// were picked from) that containers run or will be created from.
	// Their blobs and layers are kept even when no reference records
	// them any more (a tag that moved on).
	Digests []string
}

// inUse is InUse parsed once per pass.
type inUse struct {
	refs    map[string]bool
	byName  map[string][]string // repository name → digests named by reference
	digests map[string]bool
}

func (u InUse) parse() inUse {
	p := inUse{refs: map[string]bool{}, byName: map[string][]string{}, digests: map[string]bool{}}
	for _, ref := range u.Refs {
		r, err := imageref.Parse(ref)
		if err != nil {
			continue // names nothing the store can hold
		}
		p.refs[r.String()] = true
		if r.Digest != "" {
			p.byName[r.Name()] = append(p.byName[r.Name()], r.Digest)
		}
	}
	for _, d := range u.Digests {
		if d != "" {
			p.digests[d] = true
		}
	}
	return p
}

// uses says whether the reference key, recorded as rec, is in use.
func (p inUse) uses(key string, rec refRecord) bool {
	if p.refs[key] || p.digests[rec.Digest] || (rec.Index != "" && p.digests[rec.Index]) {
		return true
	}
	r, err := imageref.Parse(key)
	if err != nil {
		return false
	}
	for _, d := range p.byName[r.Name()] {
		if d == rec.Digest || d == rec.Index {
			return true
		}
	}
	return false
}

// lastUse is when a reference was last used by a container, or else
// pulled: the order of the GC (least recently used first) and what the
// minimum age is measured from.
func (rec refRecord) lastUse() time.Time {
	if rec.LastUsed.After(rec.Pulled) {
		return rec.LastUsed
	}
	return rec.Pulled
}

// candidates returns the references that may be removed: not in use, and
// neither used nor pulled after now − minAge; least recently used first
// (ties by reference).
func candidates(refs map[string]refRecord, used inUse, minAge time.Duration, now time.Time) []string {
	var out []string
	for k, rec := range refs {
		if used.uses(k, rec) || now.Sub(rec.lastUse()) < minAge {
			continue
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := refs[out[i]].lastUse(), refs[out[j]].lastUse()
		if !a.Equal(b) {
			return a.Before(b)
		}
		return out[i] < out[j]
	})
	return out
}

// GCPolicy says when GC removes images and how many.
type GCPolicy struct {
	// HighPercent: GC starts when the file system's UsedPercent is above
	// it; LowPercent: it stops once it is at or below it.
	HighPercent, LowPercent float64
	// MinAge: no image used or pulled more recently is removed.
	MinAge time.Duration
}

// DefaultGCPolicy is the daemon's default.
var DefaultGCPolicy = GCPolicy{HighPercent: DefaultGCHighPercent, LowPercent: DefaultGCLowPercent, MinAge: DefaultGCMinAge}

// ErrBadPolicy is wrapped by Check's errors.
var ErrBadPolicy = errors.New("invalid image garbage collection policy")

// Check fails unless 0 ≤ low ≤ high ≤ 100 and the minimum age is not
// negative.
func (p GCPolicy) Check() error {
	switch {
	case p.HighPercent < 0 || p.HighPercent > 100:
		return fmt.Errorf("%w: high-water mark %g %%: must be between 0 and 100", ErrBadPolicy, p.HighPercent)
	case p.LowPercent < 0 || p.LowPercent > p.HighPercent:
		return fmt.Errorf("%w: low-water mark %g %%: must be between 0 and the high-water mark (%g %%)", ErrBadPolicy, p.LowPercent, p.HighPercent)
	case p.MinAge < 0:
		return fmt.Errorf("%w: minimum age %s: must not be negative", ErrBadPolicy, p.MinAge)
	}
	return nil
}

// Removed is one reference a GC or Prune removed.
type Removed struct {
	Ref    string
	Digest string
	// LastUsed is when it was last used by a container, or else pulled.
	LastUsed time.Time
	// Freed is the disk space its removal freed: the blobs and layers no
	// other image needed (0 when another reference records its digest).
	Freed int64
}

// GCResult is what a GC or Prune did.
type GCResult struct {
	// Before and After are the file system's usage around the pass.
	Before, After Usage
	Removed       []Removed
	// Freed is the sum of Removed's.
	Freed int64
	// Short: the file system is still above the low-water mark with no
	// image left that may be removed (GC only).
	Short bool
}

// errSkip says that a candidate changed (used, pulled again) between the
// choice and the removal: it is left alone.
var errSkip = errors.New("image was used or pulled again meanwhile")

// GC frees disk space as p says: when the file system is above the
// high-water mark, it removes the references that inUse does not name,
// least recently used first, until the file system is at or below the
// low-water mark or no candidate is left. inUse is asked again before
// each removal, and a reference used or pulled again since it was chosen
// is skipped. Each removal is logged with the bytes it freed.
func (s *Store) GC(ctx context.Context, p GCPolicy, inUse func() (InUse, error), now time.Time) (GCResult, error) {
	if err := p.Check(); err != nil {
		return GCResult{}, err
	}
	u, err := s.Usage()
	if err != nil {
		return GCResult{}, err
	}
	res := GCResult{Before: u, After: u}
	if u.UsedPercent() <= p.HighPercent {
		return res, nil
	}
	s.log.Info("image store above its high-water mark: removing unused images", "path", s.root,
		"usedPercent", fmt.Sprintf("%.1f", u.UsedPercent()), "high", p.HighPercent, "low", p.LowPercent)
	err = s.removeUnused(ctx, &res, inUse, p.MinAge, now, func(u Usage) bool { return u.UsedPercent() <= p.LowPercent }, "garbage collection")
	if err == nil && res.After.UsedPercent() > p.LowPercent {
		res.Short = true
	}
	return res, err
}

// Prune removes every reference that inUse does not name and that was
// neither used nor pulled within minAge (0: whatever its age), least
// recently used first, whatever the file system's usage.
func (s *Store) Prune(ctx context.Context, used InUse, minAge time.Duration, now time.Time) (GCResult, error) {
	if minAge < 0 {
		return GCResult{}, fmt.Errorf("%w: minimum age %s: must not be negative", ErrBadPolicy, minAge)
	}
	u, err := s.Usage()
	if err != nil {
		return GCResult{}, err
	}
	res := GCResult{Before: u, After: u}
	err = s.removeUnused(ctx, &res, func() (InUse, error) { return used, nil }, minAge, now, func(Usage) bool { return false }, "prune")
	return res, err
}

// removeUnused removes candidates one at a time until done says the
// usage is low enough, filling res. Independent failures are joined; a
// failure to tell what is in use stops it.
func (s *Store) removeUnused(ctx context.Context, res *GCResult, inUse func() (InUse, error), minAge time.Duration, now time.Time,
	done func(Usage) bool, why string) error {
	tried := map[string]bool{}
	var errs []error
	for {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, context.Cause(ctx))...)
		}
		used, err := inUse()
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("unable to tell which images are in use (nothing more removed): %w", err))...)
		}
		pu := used.parse()
		rf, err := s.readRefs()
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		var next string
		for _, k := range candidates(rf.Refs, pu, minAge, now) {
			if !tried[k] {
				next = k
				break
			}
		}
		if next == "" {
			return errors.Join(errs...)
		}
		tried[next] = true
		chosen := rf.Refs[next]
		freed, err := s.remove(next, used.Digests, func(rec refRecord) error {
			// Under refs.lock: the record must be the one chosen (no
			// pull moved it, no container used it since).
			if rec.Digest != chosen.Digest || !rec.lastUse().Equal(chosen.lastUse()) {
				return errSkip
			}
			return nil
		})
		switch {
		case errors.Is(err, errSkip), errors.Is(err, ErrNotFound) && freed == 0:
			s.log.Info("image left in place: used, pulled or removed meanwhile", "ref", next)
			continue
		case err != nil:
			errs = append(errs, err)
			if freed == 0 {
				continue
			}
		}
		r := Removed{Ref: next, Digest: chosen.Digest, LastUsed: chosen.lastUse(), Freed: freed}
		res.Removed = append(res.Removed, r)
		res.Freed += freed
		if u, uerr := s.Usage(); uerr == nil {
			res.After = u
		} else {
			errs = append(errs, uerr)
		}
		s.log.Info("image removed by "+why, "ref", r.Ref, "digest", r.Digest, "lastUsed", r.LastUsed,
			"freedBytes", freed, "usedPercent", fmt.Sprintf("%.1f", res.After.UsedPercent()))
		if done(res.After) {
			return errors.Join(errs...)
		}
	}
}
