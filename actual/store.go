package actual

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/atomicfile"
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
// so the cache never hides a change it made or an exit; whether it is
// paused is read again after at most pausedTTL; the TTL bounds how long another change made
// behind its back (someone running `reconciled runtime` on the same root)
// stays unseen.
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
}

type cached struct {
	c        Container // without Record
	paths    map[string]string
	at       time.Time
	pausedAt time.Time // when c.Paused was read
}

// pausedTTL bounds how long a cached observation's paused flag is trusted.
const pausedTTL = time.Second

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
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
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
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("unable to encode the record of %s: %w", name, err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("unable to create %s: %w", s.dir, err)
	}
	if err := atomicfile.Write(s.dir, name+".json", append(data, '\n'), 0o600, atomicfile.SyncDir); err != nil {
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
	delete(s.cache, name)
	s.gen[name]++
}

// Observe returns every container under the executor root, each with its
// record (Applied, Restarts, Failures, StopRequested) and the spec hashes
// of the definition it runs, taken from the record.
func (s *Store) Observe(ctx context.Context) (Set, error) {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Set{}, nil
		}
		return nil, fmt.Errorf("unable to list containers in %s: %w", s.root, err)
	}
	now := s.now()
	set := make(Set, len(entries))
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || executor.ValidateID(name) != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		s.mu.Lock()
		ent, hit := s.cache[name]
		gen := s.gen[name]
		s.mu.Unlock()
		if !hit || s.ttl <= 0 || now.Sub(ent.at) >= s.ttl {
			c, paths, err := s.read(name)
			if err != nil {
				if errors.Is(err, executor.ErrNotExist) {
					continue // deleted meanwhile
				}
				errs = append(errs, err)
				continue
			}
			hit = false
			ent = cached{c: *c, paths: paths, at: now, pausedAt: now}
			if s.ttl > 0 {
				s.mu.Lock()
				if s.gen[name] == gen {
					s.cache[name] = ent
				}
				s.mu.Unlock()
			}
		}
		if hit && ent.c.InitAlive && now.Sub(ent.pausedAt) >= pausedTTL {
			// Pause and resume are done by operators behind the daemon's
			// back (reconciled pause): a cached entry's freezer state is
			// read again once it is pausedTTL old. Not on every Observe:
			// the loop observes all containers for each one it works on,
			// which made this one file read n² reads after a converge.
			ent.c.Paused, ent.pausedAt = frozen(ent.paths), now
			s.mu.Lock()
			if s.gen[name] == gen {
				if cur, ok := s.cache[name]; ok && cur.at.Equal(ent.at) {
					s.cache[name] = ent
				}
			}
			s.mu.Unlock()
		}
		c := ent.c
		s.mu.Lock()
		c.Record = s.records[name]
		s.mu.Unlock()
		if c.Applied != nil {
			c.SpecHash, c.BaseHash = c.Applied.Hash, c.Applied.BaseHash
		}
		set[name] = &c
	}
	// Drop cache entries of containers that are gone.
	if s.ttl > 0 {
		s.mu.Lock()
		for n := range s.cache {
			if set[n] == nil {
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

// read observes one container: the executor's state checked against the
// kernel.
// read observes one container; it also returns its cgroup paths.
func (s *Store) read(name string) (*Container, map[string]string, error) {
	st, err := executor.ReadState(s.root, name)
	if err != nil {
		if errors.Is(err, executor.ErrNotExist) {
			return nil, nil, err
		}
		// A state file that cannot be parsed was left half-written (the
		// executor writes it atomically, so this is a crash or a full
		// disk): it is a container being created, which the planner
		// deletes and redoes.
		s.log.Warn("unreadable container state; treating it as half-created", "container", name, "err", err)
		return &Container{Name: name, Status: StatusCreating}, nil, nil
	}
	if st.Status == executor.StatusStopped && !st.Exited && processAlive(st.MonitorPid, st.MonitorStartTime) {
		// The init is gone and its monitor is about to record how it
		// ended: give it a moment, so the exit status is known.
		waitExit(st.MonitorPid, st.MonitorStartTime, monitorGrace)
		if again, err := executor.ReadState(s.root, name); err == nil {
			st = again
		}
	}
	c := &Container{
		Name:         name,
		Status:       Status(st.Status),
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
	if (c.Status == StatusCreated || c.Status == StatusRunning) && processAlive(st.Pid, st.PidStartTime) {
		c.InitAlive = true
		c.CgroupHasProcs = true
		c.Paused = frozen(st.CgroupPaths)
	} else {
		c.CgroupHasProcs = cgroupHasProcs(st.CgroupPaths)
	}
	return c, st.CgroupPaths, nil
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
	if got, _, err := executor.ProcStartTime(pid); err != nil || got != start {
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
// there, else in the first v1 controller that has one.
func cgroupHasProcs(paths map[string]string) bool {
	for _, k := range cgroupOrder(paths) {
		data, err := os.ReadFile(filepath.Join(paths[k], "cgroup.procs"))
		if err != nil {
			continue // this hierarchy's cgroup is gone; try another
		}
		return len(bytes.TrimSpace(data)) > 0
	}
	return false
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
// or cgroup.freeze in the unified hierarchy).
func frozen(paths map[string]string) bool {
	if p, ok := paths["freezer"]; ok {
		data, err := os.ReadFile(filepath.Join(p, "freezer.state"))
		if err == nil {
			st := string(bytes.TrimSpace(data))
			return st == "FROZEN" || st == "FREEZING"
		}
	}
	if p, ok := paths[""]; ok {
		data, err := os.ReadFile(filepath.Join(p, "cgroup.freeze"))
		if err == nil {
			return string(bytes.TrimSpace(data)) == "1"
		}
	}
	return false
}

// processAlive reports whether pid runs (not a zombie) and started at start.
func processAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	got, zombie, err := executor.ProcStartTime(pid)
	return err == nil && !zombie && got == start
}
