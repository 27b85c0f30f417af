package desired

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
)

// WatchOptions configure Watch. Zero values take the defaults.
type WatchOptions struct {
	Options
	// Prev is the Set to start from (the last good state the caller knows);
	// the empty Set when zero.
	Prev Set
	// Debounce is the quiet time after the last relevant event before the
	// directory is read again (default 100ms): a burst of events (an editor's
	// save, a partial write, a checkout) becomes one read.
	Debounce time.Duration
	// Settle is the quiet time used instead of Debounce while every event of
	// a burst is a Create (default 2ms). A file renamed or linked into place
	// is whole the moment it appears, and a symlink swap is atomic, so there
	// is nothing to wait for; a file written in place produces Write events
	// (a truncation too), which switch the burst to Debounce, and a created
	// file still empty, or still open for writing (a read lease refused),
	// when the burst is read switches it too: its Write events may not have
	// come through yet.
	//
	// The first event of a burst (no read in the last Settle) is not waited
	// for at all when, once the events already queued are taken, every path
	// the burst created is a non-empty regular file that no process has open
	// for writing (a read lease can be taken on it): the directory is read
	// at once. A file renamed into place passes; a file being written in
	// place, a new directory or symlink, or a filesystem without leases
	// falls back to Settle. Events after that read make a burst of their
	// own, which waits for Settle (or Debounce) as above. What remains: a
	// writer that closes a file and opens it again between partial writes
	// can have a partial file read when the part written is valid on its
	// own; the file is read again after its next write.
	Settle time.Duration
	// MaxDelay bounds how long a constant stream of events can postpone the
	// read (default 1s).
	MaxDelay time.Duration
	// Resync is the period of the full re-read that runs whatever the
	// events say, the safety net for lost events (default 60s). It delivers
	// nothing when nothing changed.
	Resync time.Duration
	// MissingGrace is how long the last Set stays in force while the
	// manifests path does not exist (default 30s). When it runs out, an
	// empty Set is delivered: every container goes. Negative: keep the last
	// Set for as long as the path is missing.
	MissingGrace time.Duration
	// Logger receives warnings (missing directory, overflow, read errors).
	Logger *slog.Logger

	// test hooks
	dropEvents *atomic.Bool  // when set, filesystem events are discarded
	inject     chan error    // errors fed as if from fsnotify
	loads      *atomic.Int64 // counts the directory's reads
	afterLoad  func(*Loader) // called after each Load, before the watches are synced
}

// Defaults of WatchOptions.
const (
	DefaultDebounce     = 100 * time.Millisecond
	DefaultSettle       = 2 * time.Millisecond
	DefaultMaxDelay     = time.Second
	DefaultResync       = 60 * time.Second
	DefaultMissingGrace = 30 * time.Second
	missingRetry        = time.Second
	// A file not read for a reason of the host's (Loader.Unread) is read
	// again after rereadFirst, the delay doubling up to rereadMax while it
	// stays unread.
	rereadFirst = 100 * time.Millisecond
	rereadMax   = 10 * time.Second
)

// Watch watches the manifests directory dir and delivers complete Sets on
// the returned channel: the first one as soon as the directory has been
// read, then one each time the result changes (Set.Equal). Nothing is
// delivered when nothing changed. The channel holds one Set and keeps only
// the newest: a slow reader skips intermediate Sets but never receives an
// older Set after a newer one. It is closed when ctx ends.
//
// How changes are seen, without polling:
//
//   - The directory that holds dir is watched too, so that dir may be a
//     symlink swapped atomically (git-sync's current -> rev-<sha>): the
//     new target is read in full, and only then delivered; there is no
//     moment where its containers look deleted. Every subdirectory walked
//     is watched (dot-directories such as .git are neither walked nor
//     watched), and so is the set of symlinks met, so a ConfigMap-style
//     ..data swap is seen as well.
//   - Only events that can change the result start a read: manifest names,
//     directories, symlinks and the path itself. Editors' temporary files
//     (vim's 4913 and .swp, ~ backups, emacs .# locks) and other dot-files
//     do not.
//   - Reads are debounced (Debounce, bounded by MaxDelay). A burst made of
//     Create events alone (a rename into place, a new link or directory)
//     is read after Settle instead: such a file is complete when it
//     appears. A burst that starts with the rename of a file into place,
//     the file not open for writing, is read at once (see Settle). A read
//     that met a symlink swap is taken again.
//   - A read opens only the files that may have changed: those an event
//     named since the last read, and those whose stat (inode, size, times,
//     mode, owner) differs from the one they were read with. Symlinked
//     files are opened every time. When the events since the last read
//     name only regular manifest files in directories it walked, the read
//     neither lists the directories nor stats the other files: the
//     events are all that changed (see Loader). A directory watched for
//     the first time is read again once its watch is in place.
//   - On an inotify queue overflow every file is read again, and so at
//     every Resync that finds the stat of a directory, of a file or the git
//     revision changed since the last one, or a change too recent to trust
//     the timestamps (a second); a Resync that finds nothing changed reads
//     nothing.
//
// A file that cannot be read for a reason of the host's, not of the file
// (too many open files, no memory, an I/O error) is no verdict on the
// manifest: its last content stays in force, the error shows in its
// FileStatus and the log, and it is read again after 100ms, the delay
// doubling up to 10s, until it reads, events or not.
//
// A missing directory (deleted, renamed away, a dangling link) is not
// taken as "no containers" at once: the last Set stays for MissingGrace,
// so that a transient rename or a re-created directory kills nothing. If
// the directory is missing at start, nothing is delivered until it
// appears or the grace runs out; callers should not act before the first
// Set. While missing, the path is checked every second as well as watched.
func Watch(ctx context.Context, dir string, opts WatchOptions) (<-chan Set, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("unable to resolve %s: %w", dir, err)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Settle <= 0 {
		opts.Settle = DefaultSettle
	}
	if opts.Settle > opts.Debounce {
		opts.Settle = opts.Debounce
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.MaxDelay < opts.Debounce {
		opts.MaxDelay = opts.Debounce
	}
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	if opts.MissingGrace == 0 {
		opts.MissingGrace = DefaultMissingGrace
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("unable to watch %s: %w", dir, err)
	}
	prev := opts.Prev
	if prev.Containers == nil {
		prev = Set{Containers: map[string]*Container{}, Files: map[string]*FileStatus{}}
	}
	w := &watcher{
		abs:     abs,
		holder:  filepath.Dir(abs),
		opts:    opts,
		loader:  NewLoader(abs, opts.Options, prev),
		fsw:     fsw,
		watched: map[string]bool{},
		out:     make(chan Set, 1),
		log:     opts.Logger.With("dir", dir),
	}
	w.reload(time.Now())
	go w.run(ctx)
	return w.out, nil
}

type watcher struct {
	abs, holder string
	opts        WatchOptions
	loader      *Loader
	fsw         *fsnotify.Watcher
	watched     map[string]bool
	out         chan Set
	log         *slog.Logger

	delivered    bool      // a first Set went out
	lastRead     time.Time // when the last read ended
	missingSince time.Time // zero while the directory exists
	retry        *time.Timer
	stamp        treeStamp // taken by the last resync that read the directory
	// reread reads again the files of Loader.Unread, after rereadWait.
	reread     *time.Timer
	rereadWait time.Duration
}

func (w *watcher) run(ctx context.Context) {
	defer close(w.out)
	defer w.fsw.Close()

	var (
		debounce, maxDelay   *time.Timer
		debounceC, maxDelayC <-chan time.Time
		retryC, rereadC      <-chan time.Time
		// createsOnly: every event of the current burst was a Create,
		// so the burst is read after Settle rather than Debounce; created
		// are the paths those events named.
		createsOnly bool
		created     []string
	)
	stop := func(t *time.Timer) {
		if t != nil {
			t.Stop()
		}
	}
	defer func() { stop(debounce); stop(maxDelay); stop(w.retry); stop(w.reread) }()
	resync := time.NewTicker(w.opts.Resync)
	defer resync.Stop()

	arm := func(ev fsnotify.Event) {
		w.loader.MarkDirty(ev.Name)
		create := ev.Op == fsnotify.Create
		wait := func() time.Duration {
			if createsOnly {
				return w.opts.Settle
			}
			return w.opts.Debounce
		}
		if debounceC == nil {
			createsOnly, created = create, created[:0]
			maxDelay = time.NewTimer(w.opts.MaxDelay)
			maxDelayC = maxDelay.C
			debounce = time.NewTimer(wait())
			debounceC = debounce.C
		} else {
			createsOnly = createsOnly && create
			debounce.Reset(wait())
		}
		if createsOnly {
			created = append(created, ev.Name)
		}
	}
	// settled says whether a burst of Creates can be read now. Events the
	// kernel queued meanwhile are taken first (a Write among them means the
	// file is being written in place), and a created file that is still
	// empty is waited for: its writer has not written yet.
	settled := func() bool {
		for drained := false; !drained; {
			select {
			case ev, ok := <-w.fsw.Events:
				if ok && !w.dropped() && w.relevant(ev) {
					arm(ev)
				}
			default:
				drained = true
			}
		}
		if !createsOnly {
			return false
		}
		for _, p := range created {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
				createsOnly = false
				debounce.Reset(w.opts.Debounce)
				return false
			}
		}
		// A created file still open for writing is being written in
		// place: its Write events may be in the kernel's queue and not
		// yet in ours (the partial file was read before that).
		if w.writing(created) {
			createsOnly = false
			debounce.Reset(w.opts.Debounce)
			return false
		}
		return true
	}
	reload := func() {
		stop(debounce)
		stop(maxDelay)
		debounceC, maxDelayC = nil, nil
		w.reload(time.Now())
		retryC, rereadC = nil, nil
		if w.retry != nil {
			retryC = w.retry.C
		}
		if w.reread != nil {
			rereadC = w.reread.C
		}
	}
	// full reads every file again, trusting no stamp.
	full := func() {
		w.loader.Forget()
		reload()
	}
	if w.retry != nil {
		retryC = w.retry.C
	}
	if w.reread != nil {
		rereadC = w.reread.C
	}
	var inject chan error
	if w.opts.inject != nil {
		inject = w.opts.inject
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if w.dropped() || !w.relevant(ev) {
				continue
			}
			w.log.Debug("event", "op", ev.Op.String(), "path", ev.Name)
			first := debounceC == nil && time.Since(w.lastRead) >= w.opts.Settle
			arm(ev)
			if first && createsOnly && settled() && w.unopened(created) {
				reload() // a file renamed into place: see Settle
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.fsError(err, full)
		case err := <-inject:
			w.fsError(err, full)
		case <-debounceC:
			if createsOnly && !settled() {
				continue // the timer was re-armed with Debounce
			}
			reload()
		case <-maxDelayC:
			reload()
		case <-retryC:
			full()
		case <-rereadC:
			w.reread = nil
			unread, _ := w.loader.Unread()
			for _, p := range unread {
				w.loader.MarkDirty(p)
			}
			reload()
		case <-resync.C:
			if debounceC == nil && w.unchanged(time.Now()) {
				continue // nothing to read again: see stamp
			}
			full()
		}
	}
}

// dropped says whether the dropEvents test hook discards events now.
func (w *watcher) dropped() bool {
	return w.opts.dropEvents != nil && w.opts.dropEvents.Load()
}

// unopened says whether every path is a non-empty regular file (not a
// symlink) that no process has open for writing: the kernel grants a read
// lease only then. Any other failure to take the lease (a filesystem
// without leases, a file owned by another user for a process without
// CAP_LEASE) counts as open.
func (w *watcher) unopened(paths []string) bool {
	for _, p := range paths {
		if w.lease(p) != leaseGranted {
			return false
		}
	}
	return true
}

// writing says whether a path is a regular file that a process has open
// for writing (a read lease refused with EAGAIN). What cannot be told (not
// a regular file, no leases on the filesystem) says false.
func (w *watcher) writing(paths []string) bool {
	for _, p := range paths {
		if w.lease(p) == leaseBusy {
			return true
		}
	}
	return false
}

type leaseResult int

const (
	leaseUnknown leaseResult = iota // not a non-empty regular file, or no lease to be had
	leaseGranted                    // nothing has it open for writing
	leaseBusy                       // open for writing (EAGAIN)
)

// lease tries a read lease on p and gives it back at once.
func (w *watcher) lease(p string) leaseResult {
	var st unix.Stat_t
	if unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size == 0 {
		return leaseUnknown
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
	if err != nil {
		return leaseUnknown
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK)
	res := leaseGranted
	switch {
	case errors.Is(err, unix.EAGAIN):
		res = leaseBusy
	case err != nil:
		res = leaseUnknown
		w.log.Debug("no read lease; waiting for Settle", "path", p, "err", err)
	default:
		// Closing the descriptor releases the lease as well.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK); err != nil {
			w.log.Debug("unable to release a read lease", "path", p, "err", err)
		}
	}
	if err := unix.Close(fd); err != nil {
		w.log.Debug("unable to close", "path", p, "err", err)
	}
	return res
}

func (w *watcher) fsError(err error, reload func()) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		w.log.Warn("inotify queue overflowed; reading the manifests again in full")
		reload()
		return
	}
	w.log.Warn("watch error", "err", err)
}

// relevant says whether an event can change the Set.
func (w *watcher) relevant(ev fsnotify.Event) bool {
	if ev.Name == w.abs || w.watched[ev.Name] {
		return true // the path itself, or a watched directory that went away or moved
	}
	if filepath.Dir(ev.Name) == w.holder {
		return false // a sibling of the manifests path (git-sync's rev dirs)
	}
	base := filepath.Base(ev.Name)
	if isManifestName(base) {
		return true
	}
	fi, err := os.Lstat(ev.Name)
	if err != nil {
		return false
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return true // ..data swaps, links to manifests
	}
	return fi.IsDir() && !strings.HasPrefix(base, ".")
}

// reload reads the directory and delivers the Set if it changed.
func (w *watcher) reload(now time.Time) {
	if w.retry != nil {
		w.retry.Stop()
		w.retry = nil
	}
	set, changed, err := w.load()
	// A directory watched for the first time was listed before its watch
	// was in place: what changed in it in between made no event, and the
	// Loader's event-driven reads count on events. Read again, unmarked
	// (every directory listed, every file's stat compared), now that the
	// watches are in place.
	for try := 0; err == nil && w.syncWatches(w.loader.Dirs()) > 0 && try < 3; try++ {
		var again bool
		set, again, err = w.load()
		changed = changed || again
	}
	w.lastRead = time.Now()
	if err != nil {
		if changed {
			w.deliver(w.loader.Last()) // read whole before the error
		}
		w.syncWatches(nil)
		if !errors.Is(err, ErrNotExist) {
			w.log.Error("unable to read the manifests; keeping the last good state", "err", err)
			w.retry = time.NewTimer(missingRetry)
			return
		}
		if w.missingSince.IsZero() {
			w.missingSince = now
			if w.opts.MissingGrace > 0 {
				w.log.Warn("manifests directory is missing; keeping the last state for the grace period", "grace", w.opts.MissingGrace)
			} else {
				w.log.Warn("manifests directory is missing; keeping the last state until it is back")
			}
		}
		wait := missingRetry
		if g := w.opts.MissingGrace; g > 0 {
			left := w.missingSince.Add(g).Sub(now)
			if left <= 0 {
				empty := Set{Containers: map[string]*Container{}, Files: map[string]*FileStatus{}}
				if !w.delivered || !w.loader.Last().Equal(empty) {
					w.log.Warn("manifests directory still missing after the grace period; no containers are wanted")
					w.loader.Reset(empty)
					w.deliver(empty)
				}
			} else if left < wait {
				wait = left
			}
		}
		w.retry = time.NewTimer(wait)
		return
	}
	if !w.missingSince.IsZero() {
		w.log.Info("manifests directory is back")
		w.missingSince = time.Time{}
	}
	w.log.Debug("read", "changed", changed, "containers", len(set.Containers), "files", len(set.Files))
	if changed || !w.delivered {
		w.deliver(set)
	}
	w.armReread()
}

// armReread has the files the last read could not read for a reason of
// the host's (Loader.Unread: too many open files, no memory) read again,
// events or not: after rereadFirst, the delay doubling up to rereadMax
// while they stay unread. Their last content stays in force meanwhile,
// and the Set reports the error in their FileStatus.
func (w *watcher) armReread() {
	unread, err := w.loader.Unread()
	if len(unread) == 0 {
		if w.reread != nil {
			w.reread.Stop()
			w.reread = nil
		}
		if w.rereadWait > 0 {
			w.log.Info("manifest files read again")
			w.rereadWait = 0
		}
		return
	}
	if w.reread != nil {
		return // armed already
	}
	w.rereadWait = min(max(2*w.rereadWait, rereadFirst), rereadMax)
	w.log.Warn("unable to read manifest files; keeping their last content and reading them again",
		"files", len(unread), "retry", w.rereadWait, "err", err)
	w.reread = time.NewTimer(w.rereadWait)
}

// load is one Loader.Load, counted for tests.
func (w *watcher) load() (Set, bool, error) {
	if w.opts.loads != nil {
		w.opts.loads.Add(1)
	}
	s, changed, err := w.loader.Load()
	if w.opts.afterLoad != nil {
		w.opts.afterLoad(w.loader)
	}
	return s, changed, err
}

// deliver puts s on the channel, replacing a Set not yet received.
func (w *watcher) deliver(s Set) {
	select {
	case <-w.out:
	default:
	}
	w.out <- s
	w.delivered = true
}

// syncWatches makes the watch list the holder plus dirs, and returns how
// many of dirs it started to watch.
func (w *watcher) syncWatches(dirs []string) int {
	added := 0
	want := map[string]bool{w.holder: true}
	for _, d := range dirs {
		want[d] = true
	}
	for d := range want {
		if w.watched[d] {
			continue
		}
		if err := w.fsw.Add(d); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				w.log.Warn("unable to watch", "path", d, "err", err)
			}
			continue
		}
		w.watched[d] = true
		if d != w.holder {
			added++
		}
	}
	for d := range w.watched {
		if !want[d] {
			// The directory may be gone already, which removed the watch.
			if err := w.fsw.Remove(d); err != nil && !errors.Is(err, fsnotify.ErrNonExistentWatch) {
				w.log.Debug("unable to remove a watch", "path", d, "err", err)
			}
			delete(w.watched, d)
		}
	}
	return added
}

// treeStamp is what a resync looks at before it reads every manifest again
// (with a thousand files that read is the idle daemon's largest cost): the
// stat of the manifests path (through its links), of the directory that
// holds it, of every directory walked and of every file of the last Set,
// and the git revision; in strict mode, the inode, owner and mode of every
// directory on the way to a manifest as well. Every way a manifest can
// change shows in it: a file written changes its mtime and ctime, one
// created, removed or renamed changes its directory's, a symlink swapped
// changes the directory that holds the link and what a stat through it
// finds, chmod and chown change the ctime.
type treeStamp struct {
	stats map[string]sys.Stamp // the zero Stamp: missing
	// trust: the inode, mode and owner of each directory the strict check
	// of the last Load looked at (see trustCheck).
	trust map[string]sys.Stamp
	rev   string
	// trusted is false when something changed within sys.RacyWindow of
	// the stamp: timestamps come from a coarse clock, so a second change
	// in the same tick could leave them as they are.
	trusted bool
}

// unchanged stamps the tree and says whether it is as the last resync that
// read it found it; when not, the new stamp is kept for the next resync,
// which reads the directory.
func (w *watcher) unchanged(now time.Time) bool {
	if !w.missingSince.IsZero() || w.retry != nil || !w.delivered {
		return false
	}
	last := w.loader.Last()
	st := treeStamp{stats: make(map[string]sys.Stamp, len(last.Files)+len(w.loader.Dirs())+2), trusted: true}
	add := func(p string) {
		ps, err := sys.StatStamp(p)
		if err == nil && ps.Racy(now) {
			st.trusted = false
		}
		st.stats[p] = ps
	}
	add(w.holder)
	add(w.abs)
	for _, d := range w.loader.Dirs() {
		add(d)
	}
	// The directories the strict check looked at: only what the check
	// reads (a chmod, a chown, another directory renamed into place), not
	// their times, which change with every entry made in them (/var/lib).
	trust := w.loader.trustDirs()
	st.trust = make(map[string]sys.Stamp, len(trust))
	for _, d := range trust {
		ps, _ := sys.StatStamp(d) // the zero Stamp: missing
		st.trust[d] = sys.Stamp{Ino: ps.Ino, Mode: ps.Mode, UID: ps.UID}
	}
	for p := range last.Files {
		add(p)
	}
	if real, err := filepath.EvalSymlinks(w.abs); err == nil {
		st.rev = revision(real)
	}
	same := w.stamp.trusted && st.rev == w.stamp.rev && len(st.stats) == len(w.stamp.stats) && len(st.trust) == len(w.stamp.trust)
	for p, ps := range st.stats {
		if !same {
			break
		}
		old, ok := w.stamp.stats[p]
		same = ok && old == ps
	}
	for p, ps := range st.trust {
		if !same {
			break
		}
		old, ok := w.stamp.trust[p]
		same = ok && old == ps
	}
	if same {
		return true
	}
	w.stamp = st
	return false
}
