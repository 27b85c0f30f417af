package actual

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/sys"
)

// Store observes the containers under one executor state root and keeps
// the daemon's record of each (actual.Record) in a directory beside it, one
// file per container (NAME.json, replaced atomically: temp file, fsync,
// rename, fsync of the directory).
//
// Only containers under the root are ever looked at: a record without a
// container there is ignored, and nothing else on the host is read but the
// containers' own /proc entries and cgroup files.
//
// Observations may be cached (StoreOptions.CacheTTL): a container's
// executor state is then read again only after Invalidate(name), or once
// the entry is older than the TTL. The daemon invalidates a container after
// every operation on it and when its init exits (it holds a pidfd on it),
// and its loop invalidates a container before it acts on it, so the cache
// never hides a change it made, an exit, or a pause done with `reconciled
// pause` (which tells the daemon). The TTL bounds how long another change
// made behind its back (someone running `reconciled runtime` on the same
// root, or freezing a cgroup by hand) stays unseen.
//
// An entry past its TTL is first checked cheaply: if its init is still
// the same live process (the Store holds a pidfd on it: one poll) and the
// container's state directory is as it was when the entry was read (every
// change the executor makes to a container's state is a file created,
// renamed or removed in that directory, which changes its mtime) and so is
// its state file (which someone may have truncated or rewritten in place),
// only the freezer state is read again; anything else reads the container
// in full. The list of containers
// is likewise read again only when the root directory changed. An idle
// daemon with a thousand containers thus makes a few syscalls per
// container per TTL, not some thirty, and allocates next to nothing. Close
// releases the pidfds.
type Store struct {
	root string // executor state root
	dir  string // records
	ttl  time.Duration
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	records map[string]Record
	cache   map[string]cached
	gen     map[string]uint64 // bumped by Invalidate, so a read racing it is not cached
	nextID  uint64
	// names lists the containers under root as of rootStamp (zero: not
	// trusted, list again).
	names     []string
	rootStamp sys.Stamp
}

type cached struct {
	id    uint64    // tells this entry from one that replaced it
	c     Container // without Record
	paths map[string]string
	at    time.Time
	// dir and file are the container's state directory and state file as
	// they were before c was read; zero when they cannot vouch for c
	// (unknown, or changed too recently for their timestamps to tell a
	// later change apart).
	dir, file sys.Stamp
	// pidfd is a pidfd on the live init, -1 when none. The cache owns it:
	// it is used and closed under the Store's lock only.
	pidfd int
}

// StoreOptions configure a Store. Zero values take the defaults.
type StoreOptions struct {
	// CacheTTL is how long an observation is reused (0: never; each
	// Observe reads everything).
	CacheTTL time.Duration
	// Logger receives warnings about unreadable state (default: discard).
	Logger *slog.Logger
}

// OpenStore returns a Store for the containers under the executor root
// runtimeRoot, whose records live in recordDir. It reads every record now
// and creates nothing: a missing directory is empty. Records that cannot be
// parsed are reported in the returned error (wrapping ErrRecord) and
// skipped; the Store is usable anyway.
func OpenStore(runtimeRoot, recordDir string, opts StoreOptions) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		root:    runtimeRoot,
		dir:     recordDir,
		ttl:     opts.CacheTTL,
		log:     opts.Logger,
		now:     time.Now,
		records: map[string]Record{},
		cache:   map[string]cached{},
		gen:     map[string]uint64{},
	}
	if err := s.loadRecords(); err != nil {
		if !errors.Is(err, ErrRecord) {
			return nil, err // the directory cannot be listed
		}
		return s, err
	}
	return s, nil
}

// Invalidate drops the cached observation of container name: the next
// Observe reads its state again.
func (s *Store) Invalidate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.cache[name]; ok {
		closePidfd(old.pidfd)
		delete(s.cache, name)
	}
	s.gen[name]++
}

// Close drops every cached observation and releases what they hold. The
// Store stays usable.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ent := range s.cache {
		closePidfd(ent.pidfd)
		delete(s.cache, name)
		s.gen[name]++
	}
	s.names, s.rootStamp = nil, sys.Stamp{}
	return nil
}

// putLocked caches ent as container name's observation, releasing the one
// it replaces.
func (s *Store) putLocked(name string, ent cached) {
	if old, ok := s.cache[name]; ok {
		closePidfd(old.pidfd)
	}
	s.nextID++
	ent.id = s.nextID
	s.cache[name] = ent
}

// Observe returns every container under the executor root, each with its
// record (Applied, Restarts, Failures, StopRequested) and the spec hashes
// of the definition it runs, taken from the record.
func (s *Store) Observe(ctx context.Context) (Set, error) {
	now := s.now()
	names, err := s.list(now)
	if err != nil {
		return nil, err
	}
	set := make(Set, len(names))
	var errs []error
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		c, err := s.get(name, now)
		if err != nil {
			if errors.Is(err, executor.ErrNotExist) {
				continue // deleted meanwhile
			}
			errs = append(errs, err)
			continue
		}
		set[name] = s.withRecord(name, c)
	}
	// Drop cache entries of containers that are gone.
	if s.ttl > 0 {
		s.mu.Lock()
		for n, ent := range s.cache {
			if set[n] == nil {
				closePidfd(ent.pidfd)
				delete(s.cache, n)
			}
		}
		s.mu.Unlock()
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// ObserveOne returns container name as Observe would, or nil when it does
// not exist.
func (s *Store) ObserveOne(ctx context.Context, name string) (*Container, error) {
	if executor.ValidateID(name) != nil {
		return nil, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(executor.StateDir(s.root, name), &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("unable to observe container %s: %w", name, &fs.PathError{Op: "stat", Path: executor.StateDir(s.root, name), Err: err})
	} else if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, nil
	}
	c, err := s.get(name, s.now())
	if err != nil {
		if errors.Is(err, executor.ErrNotExist) {
			return nil, nil // deleted meanwhile
		}
		return nil, err
	}
	return s.withRecord(name, c), nil
}

// withRecord completes an observation with the container's record and the
// spec hashes of the definition it runs, taken from the record.
func (s *Store) withRecord(name string, c Container) *Container {
	s.mu.Lock()
	c.Record = s.records[name]
	s.mu.Unlock()
	if c.Applied != nil {
		c.SpecHash, c.BaseHash = c.Applied.Hash, c.Applied.BaseHash
	}
	return &c
}

// list returns the names of the containers under the root; with a cache,
// the last list while the root directory is unchanged.
func (s *Store) list(now time.Time) ([]string, error) {
	var st unix.Stat_t
	if err := unix.Stat(s.root, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("unable to list containers in %s: %w", s.root, &fs.PathError{Op: "stat", Path: s.root, Err: err})
	}
	stamp := sys.StampOf(&st)
	if s.ttl > 0 {
		s.mu.Lock()
		names, same := s.names, s.rootStamp != (sys.Stamp{}) && s.rootStamp == stamp
		s.mu.Unlock()
		if same {
			return names, nil
		}
	}
	entries, err := os.ReadDir(s.root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("unable to list containers in %s: %w", s.root, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() && executor.ValidateID(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	if s.ttl > 0 {
		if stamp.Racy(now) {
			stamp = sys.Stamp{}
		}
		s.mu.Lock()
		s.names, s.rootStamp = names, stamp
		s.mu.Unlock()
	}
	return names, nil
}

// get returns container name's observation (without its record): the
// cached one while it is fresh or holds (see Store), else read now.
func (s *Store) get(name string, now time.Time) (Container, error) {
	s.mu.Lock()
	ent, hit := s.cache[name]
	gen := s.gen[name]
	fresh := hit && now.Sub(ent.at) < s.ttl
	alive := hit && !fresh && ent.pidfd >= 0 && pidfdAlive(ent.pidfd)
	s.mu.Unlock()
	if fresh {
		return ent.c, nil
	}
	if alive && ent.dir != (sys.Stamp{}) && s.unchanged(name, ent.dir, ent.file) {
		paused, err := frozen(ent.paths)
		if err != nil {
			return Container{}, observeError(name, err)
		}
		ent.c.Paused = paused
		ent.at = now
		s.mu.Lock()
		if cur, ok := s.cache[name]; ok && cur.id == ent.id {
			s.cache[name] = ent
		}
		s.mu.Unlock()
		return ent.c, nil
	}
	ent, err := s.read(name, now, s.ttl > 0)
	if err != nil {
		return Container{}, err
	}
	if s.ttl > 0 {
		s.mu.Lock()
		if s.gen[name] == gen {
			s.putLocked(name, ent)
		} else {
			closePidfd(ent.pidfd) // invalidated meanwhile: not cached
		}
		s.mu.Unlock()
	}
	return ent.c, nil
}

// unchanged says whether container name's state directory and state file
// are still as dir and file say.
func (s *Store) unchanged(name string, dir, file sys.Stamp) bool {
	var st unix.Stat_t
	if unix.Stat(executor.StateDir(s.root, name), &st) != nil || sys.StampOf(&st) != dir {
		return false
	}
	return unix.Stat(executor.StatePath(s.root, name), &st) == nil && sys.StampOf(&st) == file
}

// stamps returns the stamps of container name's state directory and state
// file taken at now, both zero unless both exist and neither changed within
// sys.RacyWindow of now.
func (s *Store) stamps(name string, now time.Time) (dir, file sys.Stamp) {
	var st unix.Stat_t
	if unix.Stat(executor.StateDir(s.root, name), &st) != nil {
		return sys.Stamp{}, sys.Stamp{}
	}
	dir = sys.StampOf(&st)
	if unix.Stat(executor.StatePath(s.root, name), &st) != nil {
		return sys.Stamp{}, sys.Stamp{}
	}
	file = sys.StampOf(&st)
	if dir.Racy(now) || file.Racy(now) {
		return sys.Stamp{}, sys.Stamp{}
	}
	return dir, file
}

// read observes one container: the executor's state checked against the
// kernel, with its cgroup paths and the stamps of its state directory and
// file taken before the read. With pin, a live init gets a pidfd.
func (s *Store) read(name string, now time.Time, pin bool) (cached, error) {
	ent := cached{at: now, pidfd: -1}
	ent.dir, ent.file = s.stamps(name, now)
	c, paths, err := s.readState(name, pin, &ent.pidfd)
	if err != nil {
		return cached{}, err
	}
	ent.c, ent.paths = *c, paths
	return ent, nil
}
