package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/sys"
)

// Spare cgroups take the move of a container's init into its cgroup off
// the create path. Without favordynmods (every stock kernel) the first
// write of a PID into a cgroup.procs after a quiet moment waits for an RCU
// grace period, 8-30 ms on a 2-core host: most of what a dropped manifest
// takes to run. A Runtime's spare init (executor.WithSpares) is put in a
// cgroup of its own ahead of time; the create renames that cgroup to the
// container's on the v1 hierarchies, which moves nothing. A cgroup2
// directory cannot be renamed (EPERM): on a hybrid host the cgroup2
// hierarchy, which has no controllers there and only records membership,
// gets the container's directory and its processes are moved into it in
// the background once creates pause (sweep); on a pure cgroup v2 host
// nothing is placed ahead (the create clones or moves as before).
//
// That write holds cgroup_mutex while it waits: any cgroup operation of
// the host waits with it, a create's included, even in the background. A
// spare's process that can join its cgroup itself does (SelfPlacer).

// SparePrefix starts the name of a spare cgroup, which sits beside the
// containers' cgroups in their parent. A container ID cannot start with
// '.', so no container's cgroup is ever named so.
const SparePrefix = ".spare-"

// ErrNotAdoptable means a spare cgroup cannot become the container's (it
// has another parent, or the container's cgroup exists already), and
// nothing was changed: the caller moves the process in with Apply, then
// removes the spare cgroup.
var ErrNotAdoptable = errors.New("the spare cgroup cannot become the container's")

// SpareDriver is a driver that can place a process in a cgroup made ahead
// of time, for a container that does not exist yet: cgroupfs.
type SpareDriver interface {
	// PlaceSpare makes the cgroup at p (an absolute cgroup path whose
	// last element starts with SparePrefix) in every hierarchy and moves
	// pid into it. It returns nil and no error where nothing would be
	// gained (a pure cgroup v2 host). When it fails with a Spare, the
	// caller kills pid and then removes the Spare.
	PlaceSpare(ctx context.Context, p string, pid int) (*Spare, error)
	// RemoveStaleSpares removes the spare cgroups under parent that a
	// process no longer running made (SpareName), first moving what a
	// container left in a cgroup2 one (a daemon that stopped before its
	// sweep ended) to that container's directory there.
	RemoveStaleSpares(ctx context.Context, parent string) error
	// EndSweeps runs now the moves that Adopts left for later (on a
	// hybrid host, a container's processes out of its spare's cgroup2
	// directory) and waits for them until ctx ends: a runtime that
	// stops leaves its containers in their own cgroups, for a `runtime
	// delete` to remove whole. What ctx cuts short, the next
	// RemoveStaleSpares moves.
	EndSweeps(ctx context.Context) error
}

// SpareName is the name of the seq-th spare cgroup of the process that
// calls it: the PID and start time in it tell RemoveStaleSpares whether
// its maker still runs.
func SpareName(seq uint64) string {
	start, _, _ := proc.StartTime(os.Getpid())
	return fmt.Sprintf("%s%d-%d-%d", SparePrefix, os.Getpid(), start, seq)
}

// spareOwnerRunning says whether the process that made the spare cgroup
// name (SpareName) still runs; a name it cannot parse reads as running.
func spareOwnerRunning(name string) bool {
	f := strings.Split(strings.TrimPrefix(name, SparePrefix), "-")
	if len(f) != 3 {
		return true
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return true
	}
	return proc.Running(pid, start)
}

// Spare is a cgroup made ahead of time with one process in it that has no
// container yet.
type Spare struct {
	d    *cgroupfs
	path string
	hs   []managed // in the order of d.hs
}

// Path is the spare cgroup's path, the same in every hierarchy.
func (s *Spare) Path() string { return s.path }

func (d *cgroupfs) PlaceSpare(ctx context.Context, p string, pid int) (*Spare, error) {
	s, err := d.PrepareSpare(ctx, p)
	if s == nil || err != nil {
		return s, err
	}
	v := strconv.Itoa(pid)
	for _, h := range s.hs {
		if err := appendFile(h.dir, "cgroup.procs", v); err != nil {
			return s, fmt.Errorf("moving pid %d into spare cgroup %s: %w", pid, s.path, err)
		}
	}
	return s, ctx.Err()
}

// SelfPlacer is a SpareDriver whose spare cgroups the spare's process can
// join by itself, which a write of its PID would make every other cgroup
// operation on the host wait for: that write takes the global lock of
// cgroup migrations (cgroup_threadgroup_rwsem), which after a quiet moment
// waits for an RCU grace period, while holding cgroup_mutex. On a 2-core
// VM that was 8-16 ms in which the mkdir, rename and mount of cgroups of
// every create waited. A thread that writes 0 to a v1 cgroup's tasks file
// moves alone, without that lock (0.04 ms): a single-threaded process
// (the runner init) so joins its v1 cgroups whole. A thread cannot join a
// cgroup2 directory of another domain that way (cgroup.threads): the
// process is cloned into it instead (CLONE_INTO_CGROUP).
type SelfPlacer interface {
	SpareDriver
	// PrepareSpare makes the spare cgroup at p (as PlaceSpare) in every
	// hierarchy and moves nothing into it: the process joins it itself
	// (Spare.JoinFiles, Spare.OpenUnified). It returns nil and no error
	// where PlaceSpare would. When it fails with a Spare, the caller
	// removes the Spare.
	PrepareSpare(ctx context.Context, p string) (*Spare, error)
}

// JoinFiles returns the tasks file of s in each v1 hierarchy: a
// single-threaded process that writes 0 to each is in s there.
func (s *Spare) JoinFiles() []string { return tasksFiles(s.hs) }

// OpenUnified returns a handle on s's cgroup2 directory (hybrid layout),
// for a clone into it; nil where there is none.
func (s *Spare) OpenUnified() (*os.File, error) {
	for _, h := range s.hs {
		if h.names == nil {
			return os.OpenFile(h.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		}
	}
	return nil, nil
}

// PlaceUnified moves pid into s's cgroup2 directory, where a clone into it
// did not happen (a kernel without CLONE_INTO_CGROUP).
func (s *Spare) PlaceUnified(pid int) error {
	for _, h := range s.hs {
		if h.names == nil {
			if err := appendFile(h.dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
				return fmt.Errorf("moving pid %d into spare cgroup %s: %w", pid, s.path, err)
			}
		}
	}
	return nil
}

// PrepareSpare implements SelfPlacer.
func (d *cgroupfs) PrepareSpare(ctx context.Context, p string) (*Spare, error) {
	if d.layout.Mode() == ModeUnified {
		return nil, nil
	}
	p, err := cleanPath("spare cgroup", p)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(path.Base(p), SparePrefix) {
		return nil, fmt.Errorf("spare cgroup %s: its name must start with %q", p, SparePrefix)
	}
	s := &Spare{d: d, path: p}
	for _, h := range d.hs {
		s.hs = append(s.hs, managed{hierarchy: h, dir: filepath.Join(h.mount, filepath.FromSlash(p))})
	}
	cpuset := withController(s.hs, "cpuset")
	var cpusetMade []string
	for _, h := range s.hs {
		made, err := mkdirs(h.mount, p)
		if err != nil {
			return s, err
		}
		if h.mount == cpuset.mount {
			cpusetMade = made
		}
	}
	if cpuset.mount != "" {
		if err := initCpuset(cpuset.mount, p, cpusetMade); err != nil {
			return s, err
		}
	}
	return s, ctx.Err()
}

// Remove removes the spare cgroup from every hierarchy, and the driver's
// parent (DefaultParent, DerivedParent) where that is left empty, once its
// process has left or exited: while it is busy it retries until ctx ends,
// or for 2 s when ctx has no deadline.
func (s *Spare) Remove(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx, 2*time.Second)
	defer cancel()
	var errs []error
	for _, h := range s.hs {
		if err := removeTree(ctx, h.dir); err != nil {
			errs = append(errs, err)
			continue
		}
		if parent := path.Dir(s.path); isDriverParent(parent) {
			syscall.Rmdir(filepath.Join(h.mount, parent)) // others' cgroups may live there: then it stays
		}
	}
	return errors.Join(errs...)
}

// Adopt makes the spare cgroup s the container's cgroup, with the
// resources r, without moving the process on a v1 hierarchy: each v1
// directory is renamed to the container's. The cgroup2 directory of a
// hybrid host cannot be renamed: the container's is made, and the
// processes are moved there from the spare's in the background until it
// is empty and removed (Destroy waits for that). It fails with
// ErrNotAdoptable, having changed nothing, when the container's cgroup has
// another parent or is there already; with another error the caller must
// Destroy (which removes what is left of s too).
func (m *fsManager) Adopt(ctx context.Context, s *Spare, r *specs.LinuxResources) error {
	if s == nil || s.d != m.d || path.Dir(s.path) != path.Dir(m.path) {
		return ErrNotAdoptable
	}
	m.d.lastAdopt.Store(time.Now().UnixNano())
	var renamed []int
	for i, h := range m.hs {
		if h.names == nil {
			continue
		}
		err := rename(s.hs[i].dir, h.dir)
		if err == nil {
			renamed = append(renamed, i)
			continue
		}
		var undo []error
		for _, j := range renamed {
			if uerr := rename(m.hs[j].dir, s.hs[j].dir); uerr != nil {
				undo = append(undo, uerr)
			}
		}
		if len(undo) == 0 {
			return fmt.Errorf("%w: %w", ErrNotAdoptable, err)
		}
		m.mu.Lock()
		for _, j := range renamed {
			m.created[m.hs[j].mount] = append(m.created[m.hs[j].mount], m.hs[j].dir)
		}
		m.mu.Unlock()
		m.spareLeft = s
		return fmt.Errorf("making spare cgroup %s the container's %s: %w (and undoing it: %w)", s.path, m.path, err, errors.Join(undo...))
	}
	m.mu.Lock()
	for _, j := range renamed {
		m.created[m.hs[j].mount] = append(m.created[m.hs[j].mount], m.hs[j].dir)
	}
	m.mu.Unlock()
	if u, ok := m.unified(); ok {
		made, err := mkdirs(u.mount, m.path)
		m.mu.Lock()
		m.created[u.mount] = append(m.created[u.mount], made...)
		m.mu.Unlock()
		if err != nil {
			m.spareLeft = s
			return err
		}
		from := s.hs[len(s.hs)-1].dir // the cgroup2 hierarchy is last (hierarchies)
		m.d.sweep(m.path, from, u.dir)
	}
	return m.set(r)
}

// sweepTimeout bounds a sweep: the processes of a spare's cgroup2
// directory move in one grace period's time unless something keeps them.
const sweepTimeout = 30 * time.Second

// A sweep writes PIDs into cgroup.procs, which makes every other cgroup
// operation on the host wait for a grace period (see SelfPlacer): it waits
// until no cgroup was adopted for sweepQuiet (creates in a row then sweep
// together, after the last), at most sweepMaxDefer, or until the cgroup
// is destroyed. Meanwhile the container's processes sit in the spare's
// cgroup2 directory, which on a hybrid host has no controllers.
const (
	sweepQuiet    = 50 * time.Millisecond
	sweepMaxDefer = 30 * time.Second
)

// waitQuiet waits as a sweep does before it moves anything (sweepQuiet).
// The sweeps waiting share one timer (quiet): a burst of creates leaves one
// sweep pending per container, and each re-arming a timer of its own woke
// them all every sweepQuiet, more work with every container the burst made.
func (d *cgroupfs) waitQuiet(now <-chan struct{}) {
	limit := time.NewTimer(sweepMaxDefer)
	defer limit.Stop()
	select {
	case <-d.quiet():
	case <-now:
	case <-limit.C:
	}
}

// quiet returns a channel closed once no cgroup has been adopted for
// sweepQuiet.
func (d *cgroupfs) quiet() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.quietC == nil {
		d.quietC = make(chan struct{})
		// Runs once quiet returns: it takes d.mu.
		d.quietT = time.AfterFunc(0, d.checkQuiet)
	}
	return d.quietC
}

// checkQuiet closes quiet's channel if no cgroup was adopted for
// sweepQuiet, and otherwise looks again when that can be.
func (d *cgroupfs) checkQuiet() {
	idle := time.Since(time.Unix(0, d.lastAdopt.Load()))
	d.mu.Lock()
	defer d.mu.Unlock()
	if idle < sweepQuiet {
		d.quietT.Reset(sweepQuiet - idle)
		return
	}
	close(d.quietC)
	d.quietC, d.quietT = nil, nil
}

// sweep moves every process in from to to, in the background, until from
// is empty and removed. Destroy of the cgroup at p waits for it.
func (d *cgroupfs) sweep(p, from, to string) {
	done := make(chan struct{})
	d.mu.Lock()
	if d.sweeps == nil {
		d.sweeps = map[string]*sweepRun{}
		d.sweeping = make(chan struct{}, 1)
	}
	run := &sweepRun{done: done, from: from, now: make(chan struct{})}
	d.sweeps[p] = run
	sweeping := d.sweeping
	d.mu.Unlock()
	go func() {
		defer close(done)
		d.waitQuiet(run.now)
		// One sweep at a time: the kernel serializes the writes anyway
		// (cgroup_mutex), and a thousand sweeps that waited for the same
		// pause would each hold a thread blocked in one.
		sweeping <- struct{}{}
		run.err = sweepDir(from, to, time.Now().Add(sweepTimeout))
		<-sweeping
		if run.err != nil {
			return // for Destroy to see, and remove what is left
		}
		d.mu.Lock()
		if d.sweeps[p] == run {
			delete(d.sweeps, p)
		}
		d.mu.Unlock()
	}()
}

type sweepRun struct {
	done    chan struct{}
	now     chan struct{} // closed: sweep without waiting for quiet
	nowOnce sync.Once
	from    string
	err     error // read after done is closed
}

// endSweep waits for the sweep into the cgroup at p, if there is one, and
// when it failed removes the spare directory it left; it returns the
// sweep's error.
func (d *cgroupfs) endSweep(ctx context.Context, p string) error {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	run := d.sweeps[p]
	d.mu.Unlock()
	if run == nil {
		return nil
	}
	run.nowOnce.Do(func() { close(run.now) })
	select {
	case <-run.done:
	case <-ctx.Done():
		return fmt.Errorf("moving the processes of cgroup %s out of its spare: %w", p, context.Cause(ctx))
	}
	d.mu.Lock()
	if d.sweeps[p] == run {
		delete(d.sweeps, p)
	}
	d.mu.Unlock()
	if run.err == nil {
		return nil
	}
	return errors.Join(run.err, removeTree(ctx, run.from))
}

// EndSweeps implements SpareDriver.
func (d *cgroupfs) EndSweeps(ctx context.Context) error {
	d.mu.Lock()
	runs := make([]*sweepRun, 0, len(d.sweeps))
	for _, run := range d.sweeps {
		runs = append(runs, run)
	}
	d.mu.Unlock()
	for _, run := range runs {
		run.nowOnce.Do(func() { close(run.now) })
	}
	var errs []error
	for i, run := range runs {
		select {
		case <-run.done:
		case <-ctx.Done():
			return fmt.Errorf("moving processes out of spare cgroups: %d of %d moves not done: %w", len(runs)-i, len(runs), context.Cause(ctx))
		}
		if run.err != nil {
			errs = append(errs, run.err)
		}
	}
	return errors.Join(errs...)
}

// sweepDir moves the processes in from (a cgroup2 directory) to to until
// from is empty, then removes from. A process forked meanwhile in from is
// moved by a later round; one that exits is no error. When to is gone
// (the container was deleted) it only waits for from to empty.
func sweepDir(from, to string, deadline time.Time) error {
	wait := 100 * time.Microsecond
	var last error
	toGone := false
	for {
		pids, err := readProcs(from)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			err := syscall.Rmdir(from)
			if err == nil || err == syscall.ENOENT {
				return nil
			}
			if err != syscall.EBUSY {
				return fmt.Errorf("removing spare cgroup %s: %w", from, os.NewSyscallError("rmdir", err))
			}
		}
		for _, pid := range pids {
			if toGone {
				break
			}
			err := appendFile(to, "cgroup.procs", strconv.Itoa(pid))
			switch {
			case err == nil, errors.Is(err, syscall.ESRCH):
			case errors.Is(err, os.ErrNotExist):
				toGone = true
			default:
				last = fmt.Errorf("moving pid %d from %s to %s: %w", pid, from, to, err)
			}
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = fmt.Errorf("processes %v still there", pids)
			}
			return fmt.Errorf("spare cgroup %s: %w", from, last)
		}
		time.Sleep(wait)
		wait = min(2*wait, 10*time.Millisecond)
	}
}

func (d *cgroupfs) RemoveStaleSpares(ctx context.Context, parent string) error {
	parent, err := cleanPath("cgroup parent", parent)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range d.hs {
		dir := filepath.Join(h.mount, filepath.FromSlash(parent))
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("listing cgroup %s: %w", dir, bare(err)))
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), SparePrefix) || spareOwnerRunning(e.Name()) {
				continue
			}
			sd := filepath.Join(dir, e.Name())
			if h.names == nil {
				if err := d.rehome(sd, h.mount, parent); err != nil {
					errs = append(errs, err)
				}
			}
			if err := removeTree(ctx, sd); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// rehome moves each process in sd, a stale spare's cgroup2 directory, to
// the cgroup2 directory of the container whose v1 cgroup it is in (a
// sweep cut short); a spare init of a stopped daemon stays (it exits with
// its monitor).
func (d *cgroupfs) rehome(sd, mount, parent string) error {
	pids, err := readProcs(sd)
	if err != nil || len(pids) == 0 {
		return err
	}
	var v1 hierarchy
	for _, h := range d.hs {
		if h.names != nil {
			v1 = h
			break
		}
	}
	var errs []error
	for _, pid := range pids {
		p, err := v1Path(pid, v1.names[0])
		if err != nil || path.Dir(p) != parent || strings.HasPrefix(path.Base(p), SparePrefix) {
			continue
		}
		if _, err := mkdirs(mount, p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := appendFile(filepath.Join(mount, filepath.FromSlash(p)), "cgroup.procs", strconv.Itoa(pid)); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("moving pid %d out of stale spare cgroup %s: %w", pid, sd, err))
		}
	}
	return errors.Join(errs...)
}

// v1Path is pid's cgroup in the v1 hierarchy that has controller c.
func v1Path(pid int, c string) (string, error) {
	cgs, err := proc.Cgroups(pid)
	if err != nil {
		return "", err
	}
	for ctrls, p := range cgs {
		if slices.Contains(strings.Split(ctrls, ","), c) {
			return p, nil
		}
	}
	return "", fmt.Errorf("pid %d is in no cgroup of %s", pid, c)
}

// rename is rename(2) of a cgroup directory. Not os.Rename: its lstat of
// the new name, one per hierarchy on a create's path, checks what cgroupfs
// checks itself (a v1 hierarchy refuses an existing name with EEXIST).
func rename(from, to string) error {
	if err := sys.IgnoringEINTR(func() error { return unix.Rename(from, to) }); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}
