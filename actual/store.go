package actual

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/internal/proc"
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
// change to a container's state is a file created, renamed or removed in
// that directory, which changes its mtime), only the freezer state is read
// again; anything else reads the container in full. The list of containers
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
	// dir is the container's state directory as it was before c was read;
	// zero when it cannot vouch for c (unknown, or changed too recently
	// for its timestamps to tell a later change apart).
	dir sys.Stamp
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

// ErrRecord marks a record file that cannot be read or parsed.
var ErrRecord = errors.New("unreadable container record")

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
	entries, err := os.ReadDir(recordDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return s, nil
		}
		return nil, fmt.Errorf("unable to list container records in %s: %w", recordDir, err)
	}
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(recordDir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w %s: %w", ErrRecord, path, err))
			continue
		}
		r, err := DecodeRecord(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w %s: %w", ErrRecord, path, err))
			continue
		}
		s.records[name] = r
	}
	return s, errors.Join(errs...)
}

// Records returns a copy of every record, by container name.
func (s *Store) Records() map[string]Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Record, len(s.records))
	for n, r := range s.records {
		out[n] = r
	}
	return out
}

// Record replaces container name's record, on disk first.
func (s *Store) Record(ctx context.Context, name string, r Record) error {
	if err := executor.ValidateID(name); err != nil {
		return err
	}
	data, err := EncodeRecord(r)
	if err != nil {
		return fmt.Errorf("unable to encode the record of %s: %w", name, err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("unable to create %s: %w", s.dir, err)
	}
	if err := atomicfile.Write(s.dir, name+".json", data, 0o600, atomicfile.SyncDir); err != nil {
		return fmt.Errorf("unable to write the record of %s: %w", name, err)
	}
	s.mu.Lock()
	s.records[name] = r
	s.mu.Unlock()
	return nil
}

// Forget removes container name's record; a missing one is not an error.
func (s *Store) Forget(ctx context.Context, name string) error {
	if err := executor.ValidateID(name); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(s.dir, name+".json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unable to remove the record of %s: %w", name, err)
	}
	if err == nil {
		if err := atomicfile.SyncDirectory(s.dir); err != nil {
			return fmt.Errorf("unable to remove the record of %s: %w", name, err)
		}
	}
	s.mu.Lock()
	delete(s.records, name)
	s.mu.Unlock()
	return nil
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
	if alive && ent.dir != (sys.Stamp{}) && s.sameDir(name, ent.dir) {
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

// sameDir says whether container name's state directory is still as
// stamp says.
func (s *Store) sameDir(name string, stamp sys.Stamp) bool {
	var st unix.Stat_t
	return unix.Stat(executor.StateDir(s.root, name), &st) == nil && sys.StampOf(&st) == stamp
}

// read observes one container: the executor's state checked against the
// kernel, with its cgroup paths and the stamp of its state directory taken
// before the read. With pin, a live init gets a pidfd.
func (s *Store) read(name string, now time.Time, pin bool) (cached, error) {
	ent := cached{at: now, pidfd: -1}
	var st unix.Stat_t
	if err := unix.Stat(executor.StateDir(s.root, name), &st); err == nil {
		if d := sys.StampOf(&st); !d.Racy(now) {
			ent.dir = d
		}
	}
	c, paths, err := s.readState(name, pin, &ent.pidfd)
	if err != nil {
		return cached{}, err
	}
	ent.c, ent.paths = *c, paths
	return ent, nil
}

// readState reads container name's executor state; with pin, *pidfd is a
// pidfd on its init when that is alive.
//
// What it says about the init is evidence only: an exit record, a /proc
// entry that is gone, a zombie, another start time under the PID. A
// failure to look (EMFILE, ENFILE, ENOMEM, EAGAIN, EIO…: anything with an
// errno) says nothing about the container and is returned as an error,
// never as a dead init or an empty cgroup: the loop then retries the
// container later and does nothing to it meanwhile.
func (s *Store) readState(name string, pin bool, pidfd *int) (*Container, map[string]string, error) {
	st, err := executor.ReadState(s.root, name)
	if err != nil {
		if errors.Is(err, executor.ErrNotExist) {
			// ReadState says so when the state directory cannot be
			// stat'ed, for whatever reason: only ENOENT is evidence.
			if _, serr := os.Lstat(executor.StateDir(s.root, name)); serr == nil {
				return nil, nil, observeError(name, fmt.Errorf("%w, yet its state directory is there", err))
			} else if !errors.Is(serr, fs.ErrNotExist) {
				return nil, nil, observeError(name, serr)
			}
			return nil, nil, err
		}
		if ioFailure(err) {
			return nil, nil, observeError(name, err)
		}
		// A state file that cannot be parsed was left half-written (the
		// executor writes it atomically, so this is a crash or a full
		// disk): it is a container being created, which the planner
		// deletes and redoes.
		s.log.Warn("unreadable container state; treating it as half-created", "container", name, "err", err)
		return &Container{Name: name, Status: StatusCreating}, nil, nil
	}
	if st.Status == executor.StatusStopped && !st.Exited && st.Pid > 0 {
		// ReadState says stopped also when it could not read the init's
		// /proc entry at all: ask again, telling a failure from a death.
		alive, err := proc.Alive(st.Pid, st.PidStartTime)
		if err != nil {
			return nil, nil, observeError(name, err)
		}
		if alive {
			return nil, nil, observeError(name, fmt.Errorf("its state says stopped but init %d runs (a failed read of /proc/%d)", st.Pid, st.Pid))
		}
		monitor, err := proc.Alive(st.MonitorPid, st.MonitorStartTime)
		if err != nil {
			return nil, nil, observeError(name, err)
		}
		if monitor {
			// The init is gone and its monitor is about to record how it
			// ended: give it a moment, so the exit status is known.
			waitExit(st.MonitorPid, st.MonitorStartTime, monitorGrace)
			if again, err := executor.ReadState(s.root, name); err == nil && again.Status == executor.StatusStopped {
				st = again
			}
		}
	}
	c := &Container{
		Name:         name,
		Status:       st.Status,
		Pid:          st.Pid,
		PidStartTime: st.PidStartTime,
		Exited:       st.Exited,
		ExitCode:     st.ExitCode,
		OOMKilled:    st.OOMKilled,
		Created:      st.Created,
		Started:      st.Started,
		Finished:     st.Finished,
	}
	// ReadState already says stopped for an init that is gone or whose PID
	// was reused; check again, as the planner believes InitAlive.
	fd := -1
	if pin && (c.Status == StatusCreated || c.Status == StatusRunning) && st.Pid > 0 {
		// Opened before the check: if the start time matches after, fd is
		// our init and not a process that reused its PID.
		if f, err := unix.PidfdOpen(st.Pid, 0); err == nil {
			fd = f
		}
	}
	alive := false
	if c.Status == StatusCreated || c.Status == StatusRunning {
		if alive, err = proc.Alive(st.Pid, st.PidStartTime); err != nil {
			closePidfd(fd)
			return nil, nil, observeError(name, err)
		}
	}
	if alive {
		c.InitAlive = true
		c.CgroupHasProcs = true
		c.Paused, err = frozen(st.CgroupPaths)
	} else {
		c.CgroupHasProcs, err = cgroupHasProcs(st.CgroupPaths)
	}
	if err != nil {
		closePidfd(fd)
		return nil, nil, observeError(name, err)
	}
	if alive {
		*pidfd, fd = fd, -1
	}
	closePidfd(fd)
	return c, st.CgroupPaths, nil
}

// observeError is a failure to observe container name: no evidence of
// anything about it.
func observeError(name string, err error) error {
	return fmt.Errorf("unable to observe container %s: %w", name, err)
}

// ioFailure says whether err is a failure to read (it carries an errno:
// EMFILE, ENOMEM, EIO…) rather than something read that made no sense.
func ioFailure(err error) bool {
	var errno syscall.Errno
	return errors.As(err, &errno)
}

// pidfdAlive says whether the process of pidfd fd has not exited (a
// pidfd polls readable once it has, zombie included). A failed poll says
// false: the caller then reads the container in full, which tells a
// failure from an exit.
func pidfdAlive(fd int) bool {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds[:], 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n == 0
	}
}

func closePidfd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// monitorGrace bounds how long read waits for a monitor to record an exit.
const monitorGrace = 500 * time.Millisecond

// waitExit waits up to timeout for the process (pid, start) to exit.
func waitExit(pid int, start uint64, timeout time.Duration) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if got, _, err := proc.StartTime(pid); err != nil || got != start {
		return
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == nil && n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// cgroupHasProcs says whether the container's cgroup holds a process. It
// reads cgroup.procs in the unified hierarchy if the container has a cgroup
// there, else in the first v1 controller that has one. A cgroup that is
// gone holds nothing; one that cannot be read is an error.
func cgroupHasProcs(paths map[string]string) (bool, error) {
	for _, k := range cgroupOrder(paths) {
		data, err := os.ReadFile(filepath.Join(paths[k], "cgroup.procs"))
		if err != nil {
			if proc.Gone(err) {
				continue // this hierarchy's cgroup is gone; try another
			}
			return false, err
		}
		return len(bytes.TrimSpace(data)) > 0, nil
	}
	return false, nil
}

func cgroupOrder(paths map[string]string) []string {
	preferred := []string{"", "pids", "memory", "cpu", "freezer"}
	var out []string
	for _, k := range preferred {
		if _, ok := paths[k]; ok {
			out = append(out, k)
		}
	}
	for k := range paths {
		if !slices.Contains(preferred, k) {
			out = append(out, k)
		}
	}
	return out
}

// frozen says whether the container's cgroup is frozen (v1 freezer.state,
// or cgroup.freeze in the unified hierarchy). A cgroup that is gone is not
// frozen; one that cannot be read is an error.
func frozen(paths map[string]string) (bool, error) {
	var buf [64]byte
	if p, ok := paths["freezer"]; ok {
		n, err := sys.ReadSmall(p+"/freezer.state", buf[:])
		if err == nil {
			st := string(bytes.TrimSpace(buf[:n]))
			return st == "FROZEN" || st == "FREEZING", nil
		}
		if !proc.Gone(err) {
			return false, err
		}
	}
	if p, ok := paths[""]; ok {
		n, err := sys.ReadSmall(p+"/cgroup.freeze", buf[:])
		if err == nil {
			return string(bytes.TrimSpace(buf[:n])) == "1", nil
		}
		if !proc.Gone(err) {
			return false, err
		}
	}
	return false, nil
}
