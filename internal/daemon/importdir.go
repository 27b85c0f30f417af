package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/image"
)

// DefaultImportDir is the import directory of `reconciled run`
// (--image-import-dir).
const DefaultImportDir = "/var/lib/reconciled/import"

// ImportReport is one entry of the import directory in the Report (the
// "imports" of `reconciled status -o json`).
type ImportReport struct {
	// Path is the archive or OCI layout directory.
	Path string `json:"path"`
	// Digest is the sha256 of the file (of index.json, for a layout
	// directory) as it was imported; "" when it was refused unread.
	Digest string `json:"digest"`
	// Images are the references the import stored (normalized).
	Images []string `json:"images"`
	// Imported is when the import ended, or failed.
	Imported time.Time `json:"imported,omitzero"`
	// Error says why it was not imported. A failed import is not tried
	// again until the content changes; a refused file (owner, mode, type)
	// is looked at again at each scan.
	Error string `json:"error,omitempty"`
}

// importStore is what the import directory needs of the image store
// (*image.Store).
type importStore interface {
	Import(ctx context.Context, src, name string) ([]*image.Image, error)
}

// Timings of the import directory (importDir's fields take them).
const (
	importDebounce = 100 * time.Millisecond
	importMaxDelay = time.Second
	// importSettle is how long a layout directory (or a file on a file
	// system without leases) must see no change before it is read.
	importSettle = 2 * time.Second
	// importRetryMin and importRetryMax space the looks at a file that
	// is still being written.
	importRetryMin = 250 * time.Millisecond
	importRetryMax = 5 * time.Second
	// maxLayoutEntries bounds the walk of a layout directory.
	maxLayoutEntries = 1 << 16
	// maxIndexSize bounds the index.json of a layout directory.
	maxIndexSize = 4 << 20
)

// importDir imports the image archives dropped into a directory: each
// content (by digest) once, when it is complete. See Run.
type importDir struct {
	dir       string
	statePath string
	store     importStore
	// strict refuses what is not owned by root or is writable by group
	// or others (the daemon runs as root, without --insecure-manifests).
	strict  bool
	log     *slog.Logger
	changed func() // the report changed
	now     func() time.Time

	debounce, maxDelay, settle, resync time.Duration

	mu       sync.Mutex
	records  map[string]*importRecord // by digest
	problems map[string]ImportReport  // by path: refused, unreadable, retried later
	present  map[string]string        // path → digest, the files seen whole at the last scan
	recent   map[string]bool          // digests imported or failed since the start
	dirErr   string

	// The scan's own, not locked: stamps of files hashed, and when a
	// transient failure may be tried again.
	known   map[string]knownImport
	retryAt map[string]time.Time
}

// newImportDir returns the import directory dir, importing into store and
// keeping its records in statePath. A record file that cannot be read is
// logged and started afresh (what is stored already imports as a no-op).
func newImportDir(dir, statePath string, store importStore, strict bool, resync time.Duration, log *slog.Logger, changed func()) *importDir {
	d := &importDir{
		dir: filepath.Clean(dir), statePath: statePath, store: store, strict: strict, log: log, changed: changed, now: time.Now,
		debounce: importDebounce, maxDelay: importMaxDelay, settle: importSettle, resync: resync,
		records: map[string]*importRecord{}, problems: map[string]ImportReport{}, present: map[string]string{},
		recent: map[string]bool{}, known: map[string]knownImport{}, retryAt: map[string]time.Time{},
	}
	if d.changed == nil {
		d.changed = func() {}
	}
	recs, err := readImports(statePath)
	if err != nil {
		log.Warn("unable to read the import records; archives in the import directory will be imported again", "err", err)
	}
	for i := range recs {
		r := recs[i]
		d.records[r.Digest] = &r
	}
	return d
}

// Report lists what the status shows: a problem with the directory
// itself, the imports of the files there now and of those imported or
// failed since the daemon started, and the files refused or to be tried
// again, sorted by path.
func (d *importDir) Report() []ImportReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []ImportReport{}
	if d.dirErr != "" {
		out = append(out, ImportReport{Path: d.dir, Images: []string{}, Error: d.dirErr})
	}
	shown := map[string]bool{}
	for _, dg := range d.present {
		shown[dg] = true
	}
	for dg := range d.recent {
		shown[dg] = true
	}
	for dg := range shown {
		r := d.records[dg]
		if r == nil {
			continue
		}
		if now, ok := d.present[r.Path]; ok && now != dg {
			continue // that path holds other content now
		}
		out = append(out, ImportReport{Path: r.Path, Digest: r.Digest, Images: append([]string{}, r.Images...), Imported: r.Imported, Error: r.Error})
	}
	for _, p := range d.problems {
		p.Images = append([]string{}, p.Images...)
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Imported.Before(out[j].Imported)
	})
	return out
}

// skipImportName says whether a name in the import directory is a
// temporary one, never imported: dotfiles (rsync's and atomicfile's
// temp files) and *.tmp and *.part (downloads and copies in progress,
// `image export`'s FILE.tmp).
func skipImportName(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".part")
}

// Run watches the directory until ctx ends: fsnotify events, debounced
// (debounce, at most maxDelay behind the first), plus a full scan every
// resync as the safety net for lost events, start a scan. A scan imports
// each complete archive or layout whose content digest has no record
// yet, one at a time, and records it, imported or failed, in
// STATE/imports.json; the store's new references make the daemon look at
// every container again (watchRefs). What is still being written is
// looked at again a little later, without events.
//
// The directory is created (0700) if missing. As root (strict), it and
// every file in it must be owned by root and not writable by group or
// others, like the manifests; a refused file is reported and looked at
// again at each scan.
func (d *importDir) Run(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if err != nil {
		d.log.Warn("unable to watch the import directory; it is scanned every resync", "err", err)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	watching := false
	watch := func() {
		if w == nil || watching {
			return
		}
		if err := w.Add(d.dir); err != nil {
			d.log.Debug("unable to watch the import directory yet", "dir", d.dir, "err", err)
			return
		}
		watching = true
	}

	resync := time.NewTicker(d.resync)
	defer resync.Stop()
	scanNow := time.NewTimer(0)
	defer scanNow.Stop()
	var first time.Time // of the events not yet scanned for
	retry := importRetryMin
	arm := func(after time.Duration) {
		scanNow.Stop()
		select {
		case <-scanNow.C:
		default:
		}
		scanNow.Reset(after)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Name == d.dir {
				if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					watching = false // the kernel dropped the watch with it
				}
			} else if skipImportName(filepath.Base(ev.Name)) {
				continue
			}
			now := d.now()
			if first.IsZero() {
				first = now
			}
			arm(min(d.debounce, first.Add(d.maxDelay).Sub(now)))
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				arm(0)
				continue
			}
			d.log.Warn("import directory watch", "err", err)
		case <-resync.C:
			arm(0)
		case <-scanNow.C:
			first = time.Time{}
			// The watch goes in before the listing: nothing created
			// in between is missed.
			watch()
			pending := d.scan(ctx)
			if !watching {
				// The scan (re)created the directory: watch it, and
				// look again at what came in before the watch.
				if watch(); watching {
					arm(0)
					continue
				}
			}
			if pending {
				arm(retry)
				retry = min(2*retry, importRetryMax)
			} else {
				retry = importRetryMin
			}
		}
	}
}

// scan looks at every entry of the directory once and imports what is
// ready; it says whether something is still being written.
func (d *importDir) scan(ctx context.Context) (pending bool) {
	problems := map[string]ImportReport{}
	present := map[string]string{}
	dirErr := d.prepare()
	defer func() {
		if ctx.Err() != nil {
			return // stopping: keep what the last whole scan found
		}
		d.mu.Lock()
		changed := d.dirErr != dirErr || !maps.Equal(d.present, present) ||
			!maps.EqualFunc(d.problems, problems, func(a, b ImportReport) bool {
				return a.Digest == b.Digest && a.Error == b.Error && a.Imported.Equal(b.Imported)
			})
		d.dirErr, d.problems, d.present = dirErr, problems, present
		d.mu.Unlock()
		if changed {
			d.changed()
		}
	}()
	if dirErr != "" {
		return false
	}
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		dirErr = fmt.Sprintf("unable to list the import directory: %v", err)
		return false
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if ctx.Err() != nil {
			return false
		}
		if skipImportName(e.Name()) {
			continue
		}
		p := filepath.Join(d.dir, e.Name())
		seen[p] = true
		digest, ready, err := d.candidate(ctx, p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // gone meanwhile
		case err != nil:
			problems[p] = ImportReport{Path: p, Images: []string{}, Error: err.Error()}
			continue
		case !ready:
			pending = true
			continue
		}
		present[p] = digest
		d.mu.Lock()
		done := d.records[digest] != nil
		d.mu.Unlock()
		if done {
			continue
		}
		if at, ok := d.retryAt[p]; ok && d.now().Before(at.Add(d.resync)) {
			if prev, ok := d.problemOf(p); ok {
				problems[p] = prev
			}
			continue
		}
		if again, rep := d.importOne(ctx, p, digest); again {
			pending = true
		} else if rep != nil {
			problems[p] = *rep
		}
	}
	for p := range d.known {
		if !seen[p] {
			delete(d.known, p)
		}
	}
	for p := range d.retryAt {
		if !seen[p] {
			delete(d.retryAt, p)
		}
	}
	return pending
}

func (d *importDir) problemOf(p string) (ImportReport, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.problems[p]
	return r, ok
}

// prepare creates the directory (0700) when it is missing, and says why
// it cannot be used ("" when it can).
func (d *importDir) prepare() string {
	fi, err := os.Stat(d.dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(d.dir, 0o700); err != nil {
			return fmt.Sprintf("unable to create the import directory: %v", err)
		}
		d.log.Info("import directory created", "dir", d.dir)
		fi, err = os.Stat(d.dir)
	}
	if err != nil {
		return fmt.Sprintf("unable to use the import directory: %v", err)
	}
	if !fi.IsDir() {
		return fmt.Sprintf("%s is not a directory", d.dir)
	}
	if d.strict {
		if why := desired.Untrusted(d.dir, fi); why != "" {
			return "refused: " + why + " (run with --insecure-manifests to skip this check)"
		}
	}
	return ""
}

// importOne imports p, whose content has digest, and records the result.
// again says the content changed while it was imported (look again);
// rep is a failure not recorded, to be tried again after resync (the
// disk was full, say).
func (d *importDir) importOne(ctx context.Context, p, digest string) (again bool, rep *ImportReport) {
	log := d.log.With("path", p, "digest", digest)
	log.Info("importing from the import directory")
	start := d.now()
	imgs, err := d.store.Import(ctx, p, "")
	if ctx.Err() != nil {
		return false, nil // stopping: nothing recorded, the next daemon imports it
	}
	// The content must still be what was hashed: a file replaced or
	// written meanwhile is looked at again (importing twice is a no-op).
	if now, ok := d.digestNow(ctx, p); !ok || now != digest {
		log.Info("the import directory's entry changed while it was imported; looking at it again")
		delete(d.known, p)
		return true, nil
	}
	rec := &importRecord{Digest: digest, Path: p, Images: []string{}, Imported: d.now().UTC()}
	if err != nil {
		if transientImportError(err) {
			log.Warn("import failed; trying again later", "err", err, "retryIn", d.resync)
			d.retryAt[p] = d.now()
			return false, &ImportReport{Path: p, Digest: digest, Images: []string{}, Imported: rec.Imported,
				Error: fmt.Sprintf("%v (tried again within %s)", err, d.resync)}
		}
		rec.Error = err.Error()
		log.Error("import failed; not tried again until the content changes", "err", err)
	} else {
		for _, img := range imgs {
			rec.Images = append(rec.Images, img.Ref)
		}
		slices.Sort(rec.Images)
		rec.Images = slices.Compact(rec.Images)
		log.Info("imported from the import directory", "images", strings.Join(rec.Images, ","), "took", d.now().Sub(start).Round(time.Millisecond))
	}
	delete(d.retryAt, p)
	d.mu.Lock()
	d.records[digest] = rec
	d.recent[digest] = true
	d.present[p] = digest
	serr := d.saveLocked()
	d.mu.Unlock()
	if serr != nil {
		log.Error("unable to record the import; it may be imported again after a restart", "err", serr)
	}
	d.changed()
	return false, nil
}

// transientImportError says whether an import failed for a reason of the
// host (no space, no memory), not of the archive: such a failure is
// tried again.
func transientImportError(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.EIO)
}
