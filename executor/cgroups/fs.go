package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultParent is the directory, in every hierarchy, under which a
// container's cgroup goes when its spec names no linux.cgroupsPath.
const DefaultParent = "/reconciled"

// NewCgroupfs returns the cgroupfs driver for the host's layout, read from
// /proc/self/mountinfo.
func NewCgroupfs() (Driver, error) {
	l, err := DetectLayout()
	if err != nil {
		return nil, fmt.Errorf("detecting the cgroup layout: %w", err)
	}
	return NewCgroupfsAt(l)
}

// NewCgroupfsAt returns the cgroupfs driver for the hierarchies in l, which
// may be a fake tree under a test's temporary directory.
func NewCgroupfsAt(l Layout) (Driver, error) {
	if l.Mode() == 0 {
		return nil, errors.New("cgroup layout names no hierarchy")
	}
	return &cgroupfs{layout: l, hs: l.hierarchies()}, nil
}

type cgroupfs struct {
	layout Layout
	hs     []hierarchy

	mu        sync.Mutex
	sweeps    map[string]*sweepRun // by container cgroup path (Adopt)
	lastAdopt atomic.Int64         // unix ns of the last Adopt (waitQuiet)
	sweeping  chan struct{}        // held by the sweep that runs (made with sweeps)
	quietC    chan struct{}        // closed at quiet (waitQuiet); nil when none waits
	quietT    *time.Timer          // checks for quiet (checkQuiet)
}

func (d *cgroupfs) Name() string { return "cgroupfs" }

// Manager returns the manager for the cgroup at cgroupsPath, or at
// DefaultParent/id when cgroupsPath is empty. The path is taken relative to
// the root of every hierarchy, whether it starts with '/' or not; it may not
// be the root itself nor climb above it.
func (d *cgroupfs) Manager(id, cgroupsPath string) (Manager, error) {
	p, err := cgroupPath(id, cgroupsPath)
	if err != nil {
		return nil, err
	}
	m := &fsManager{d: d, mode: d.layout.Mode(), path: p, created: map[string][]string{}}
	for _, h := range d.hs {
		m.hs = append(m.hs, managed{hierarchy: h, dir: filepath.Join(h.mount, filepath.FromSlash(p))})
	}
	return m, nil
}

func cgroupPath(id, cgroupsPath string) (string, error) {
	if cgroupsPath == "" {
		if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
			return "", fmt.Errorf("invalid container id %q for a cgroup name", id)
		}
		return DefaultParent + "/" + id, nil
	}
	p, err := cleanPath("cgroupsPath", cgroupsPath)
	if err != nil {
		return "", err
	}
	if p == "/" {
		return "", fmt.Errorf("cgroupsPath %q is the root cgroup", cgroupsPath)
	}
	return p, nil
}

// managed is a hierarchy and the container's directory in it.
type managed struct {
	hierarchy
	dir string
}

type fsManager struct {
	d    *cgroupfs
	mode Mode
	path string // "/reconciled/id", the same in every hierarchy
	hs   []managed

	mu      sync.Mutex
	created map[string][]string // mount point -> directories Apply made there, shallowest first
	// spareLeft: what a failed Adopt left of a spare cgroup, for Destroy.
	spareLeft *Spare
	// unifiedEarly: MakeUnified made the cgroup2 directory, which a
	// process may be in before Apply ends: a failed Apply leaves it to
	// Destroy.
	unifiedEarly bool
}

func (m *fsManager) Paths() map[string]string {
	out := map[string]string{}
	for _, h := range m.hs {
		if h.names == nil {
			out[""] = h.dir
			continue
		}
		for _, n := range h.names {
			out[n] = h.dir
		}
	}
	return out
}

// dirOf returns the container's directory in the v1 hierarchy of
// controller c, or "" when c is not mounted (or the layout is unified).
func (m *fsManager) dirOf(c string) string { return m.hierarchyOf(c).dir }

// unified returns the container's directory in the cgroup2 hierarchy;
// false on a legacy host.
func (m *fsManager) unified() (managed, bool) {
	for _, h := range m.hs {
		if h.names == nil {
			return h, true
		}
	}
	return managed{}, false
}

// Apply creates the cgroup in every hierarchy, sets r, then moves pid in
// (pid 0: create and set only). When it fails before moving pid it removes
// what it made; when moving pid fails the caller must Destroy.
func (m *fsManager) Apply(ctx context.Context, pid int, r *specs.LinuxResources) error {
	if pid < 0 {
		return fmt.Errorf("invalid pid %d", pid)
	}
	if err := m.create(ctx, r); err != nil {
		return m.undo(err)
	}
	if err := m.set(r); err != nil {
		return m.undo(err)
	}
	if pid == 0 {
		return nil
	}
	v := strconv.Itoa(pid)
	for _, h := range m.hs {
		if err := appendFile(h.dir, "cgroup.procs", v); err != nil {
			return fmt.Errorf("moving pid %d into cgroup %s: %w", pid, m.path, err)
		}
	}
	return nil
}

// undo removes the directories a failed Apply made (and nothing that was
// there before it), deepest first, and returns its error.
func (m *fsManager) undo(err error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for mount, made := range m.created {
		if h, ok := m.unified(); ok && m.unifiedEarly && mount == h.mount {
			continue
		}
		for i := len(made) - 1; i >= 0; i-- {
			if rerr := os.Remove(made[i]); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", made[i], bare(rerr)))
				break
			}
		}
		delete(m.created, mount)
	}
	if len(errs) > 0 {
		return errors.Join(err, fmt.Errorf("cleaning up after the failure: %w", errors.Join(errs...)))
	}
	return err
}

// create makes the directories (recording the ones it made), prepares the
// v1 cpuset and enables the v2 controllers r needs.
func (m *fsManager) create(ctx context.Context, r *specs.LinuxResources) error {
	var cpusetMade []string
	cpuset := m.hierarchyOf("cpuset")
	for _, h := range m.hs {
		made, err := mkdirs(h.mount, m.path)
		m.mu.Lock()
		m.created[h.mount] = append(m.created[h.mount], made...)
		m.mu.Unlock()
		if err != nil {
			return err
		}
		if h.mount == cpuset.mount {
			cpusetMade = made
		}
	}
	if cpuset.dir != "" {
		if err := initCpuset(cpuset.mount, m.path, cpusetMade); err != nil {
			return err
		}
	}
	if m.mode == ModeUnified {
		h, _ := m.unified()
		if err := enableControllers(h.mount, m.path, neededV2(r)); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (m *fsManager) hierarchyOf(c string) managed { return withController(m.hs, c) }

// withController returns the hierarchy of hs that has v1 controller c, or
// a zero one.
func withController(hs []managed, c string) managed {
	for _, h := range hs {
		for _, n := range h.names {
			if n == c {
				return h
			}
		}
	}
	return managed{}
}

// mkdirs makes mount/p level by level and returns the directories it made
// (not those that were there). A parent removed meanwhile by another
// manager's Destroy (ENOENT) makes it start over, a few times.
func mkdirs(mount, p string) ([]string, error) {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	var made []string
	for attempt := 0; ; attempt++ {
		dir := mount
		var err error
		for _, part := range parts {
			dir = filepath.Join(dir, part)
			err = os.Mkdir(dir, 0o755)
			if err == nil {
				made = append(made, dir)
				continue
			}
			if errors.Is(err, os.ErrExist) {
				err = nil
				continue
			}
			break
		}
		if err == nil {
			return made, nil
		}
		if !errors.Is(err, os.ErrNotExist) || attempt >= 5 {
			return made, fmt.Errorf("creating cgroup %s: %w", dir, bare(err))
		}
	}
}

// initCpuset fills cpuset.cpus and cpuset.mems, where empty, at every level
// from the cpuset mount down to p, from the parent's: a v1 cpuset cgroup
// with either empty admits no process. made are the directories mkdirs
// just made; what a level holds or gets is what the next one is given, so
// that the parent is not read again.
//
// A directory made here below which more are made (the containers'
// parent) gets cgroup.clone_children: the kernel then gives each new child
// its parent's CPUs and nodes as it makes it (and the flag with them). A write of cpuset.cpus
// rebuilds the scheduler's domains (on every create and spare, the
// largest part of their CPU in a daemon profile on a 2-core VM); a child
// made with its CPUs already has nothing to write.
func initCpuset(mount, p string, made []string) error {
	files := [2]string{"cpuset.cpus", "cpuset.mems"}
	var parentVals [2]string // the level above's, "" until read
	parent := mount
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for level, part := range parts {
		dir := filepath.Join(parent, part)
		fresh := slices.Contains(made, dir)
		var vals [2]string
		for i, f := range files {
			// A fresh directory holds what clone_children gave it, if
			// its parent has the flag: read it (a read costs no rebuild).
			cur, err := readFile(dir, f)
			if err != nil {
				return err
			}
			if v := strings.TrimSpace(cur); v != "" {
				vals[i] = v
				continue
			}
			v := parentVals[i]
			if v == "" {
				cur, err := readFile(parent, f)
				if err != nil {
					return err
				}
				v = strings.TrimSpace(cur)
			}
			if err := writeFile(dir, f, v); err != nil {
				return err
			}
			vals[i] = v
		}
		if fresh && level < len(parts)-1 {
			if err := writeFile(dir, "cgroup.clone_children", "1"); err != nil {
				return err
			}
		}
		parentVals = vals
		parent = dir
	}
	return nil
}

// neededV2 lists the v2 controllers to enable for r: memory, pids and cpu
// always (limits and stats), cpuset when r pins CPUs or memory nodes, and
// the controller of each r.Unified key.
func neededV2(r *specs.LinuxResources) []string {
	want := map[string]bool{"cpu": true, "memory": true, "pids": true}
	if r != nil {
		if r.CPU != nil && (r.CPU.Cpus != "" || r.CPU.Mems != "") {
			want["cpuset"] = true
		}
		if hasBlockIO(r.BlockIO) {
			want["io"] = true
		}
		if len(r.HugepageLimits) > 0 {
			want["hugetlb"] = true
		}
		for k := range r.Unified {
			if c, _, ok := strings.Cut(k, "."); ok && c != "cgroup" {
				want[c] = true
			}
		}
	}
	var out []string
	for c := range want {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// enableControllers adds each wanted controller that is available but not
// yet enabled to cgroup.subtree_control at every level from the mount (the
// root included, only when one is missing there) down to p's parent. It
// never removes one. A wanted controller that is not available is left out:
// the limit that needs it fails later, naming its file.
func enableControllers(mount, p string, want []string) error {
	dir := mount
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := 0; i < len(parts); i++ {
		avail, err := readFile(dir, "cgroup.controllers")
		if err != nil {
			return err
		}
		on, err := readFile(dir, "cgroup.subtree_control")
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, c := range strings.Fields(on) {
			have[strings.TrimPrefix(c, "+")] = true
		}
		can := map[string]bool{}
		for _, c := range strings.Fields(avail) {
			can[c] = true
		}
		var add []string
		for _, c := range want {
			if can[c] && !have[c] {
				add = append(add, "+"+c)
			}
		}
		if len(add) > 0 {
			if err := appendFile(dir, "cgroup.subtree_control", strings.Join(add, " ")); err != nil {
				return err
			}
		}
		dir = filepath.Join(dir, parts[i])
	}
	return nil
}

// Set changes the resources of the existing cgroup.
func (m *fsManager) Set(ctx context.Context, r *specs.LinuxResources) error {
	if err := m.mustExist(); err != nil {
		return err
	}
	if m.mode == ModeUnified {
		h, _ := m.unified()
		if err := enableControllers(h.mount, m.path, neededV2(r)); err != nil {
			return err
		}
	}
	return m.set(r)
}

func (m *fsManager) set(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if m.mode == ModeUnified {
		h, _ := m.unified()
		return setV2(h.dir, r)
	}
	return m.setV1(r)
}

// primary is the directory whose cgroup.procs is authoritative: the
// unified one on v2, else the first of pids, memory, freezer, cpu,
// name=systemd that is mounted, else any.
func (m *fsManager) primary() string {
	if m.mode == ModeUnified {
		h, _ := m.unified()
		return h.dir
	}
	for _, c := range []string{"pids", "memory", "freezer", "cpu", "name=systemd"} {
		if d := m.dirOf(c); d != "" {
			return d
		}
	}
	return m.hs[0].dir
}

func (m *fsManager) mustExist() error {
	d := m.primary()
	if _, err := os.Stat(d); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroup %s: %w", d, ErrNotExist)
		}
		return err
	}
	return nil
}

func (m *fsManager) Procs(ctx context.Context) ([]int, error) {
	if err := m.mustExist(); err != nil {
		return nil, err
	}
	return readProcs(m.primary())
}

func (m *fsManager) Stats(ctx context.Context) (*Stats, error) {
	if err := m.mustExist(); err != nil {
		return nil, err
	}
	if m.mode == ModeUnified {
		h, _ := m.unified()
		return statsV2(h.dir)
	}
	return m.statsV1()
}

// freezeTimeout bounds Freeze when ctx has no deadline.
const freezeTimeout = 10 * time.Second

// Freeze uses the v1 freezer where it is mounted, else cgroup.freeze of the
// cgroup2 hierarchy, and polls until the kernel reports the state.
func (m *fsManager) Freeze(ctx context.Context, frozen bool) error {
	if err := m.mustExist(); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, freezeTimeout, fmt.Errorf("freezing cgroup %s took over %s", m.path, freezeTimeout))
		defer cancel()
	}
	if dir := m.dirOf("freezer"); dir != "" && m.mode != ModeUnified {
		want := "THAWED"
		if frozen {
			want = "FROZEN"
		}
		return poll(ctx, func() (bool, error) {
			// Writing FROZEN again while FREEZING is harmless and nudges
			// tasks that were forking.
			if err := writeFile(dir, "freezer.state", want); err != nil {
				return false, err
			}
			s, err := readFile(dir, "freezer.state")
			return strings.TrimSpace(s) == want, err
		})
	}
	h, ok := m.unified()
	if !ok {
		return fmt.Errorf("freezing cgroup %s: no freezer hierarchy is mounted", m.path)
	}
	want := "0"
	if frozen {
		want = "1"
	}
	if err := writeFile(h.dir, "cgroup.freeze", want); err != nil {
		return err
	}
	return poll(ctx, func() (bool, error) {
		ev, err := readKeyed(h.dir, "cgroup.events")
		if err != nil {
			return false, err
		}
		return strconv.FormatUint(ev["frozen"], 10) == want, nil
	})
}

// poll calls done until it says true, fails, or ctx ends, sleeping 1 ms
// at first and up to 20 ms between calls.
func poll(ctx context.Context, done func() (bool, error)) error {
	wait := time.Millisecond
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// Destroy thaws a frozen v1 cgroup (its killed tasks cannot exit before),
// then removes the cgroup in every hierarchy: the sub-cgroups the
// container made inside it first (deepest first), then its own directory,
// then, while they are empty, the parents that this manager's Apply made
// and DefaultParent or a DerivedParent (shared by a daemon's containers).
// A directory that is already gone is no error; one still busy (EBUSY: a
// process that just exited may still be accounted) is retried until ctx
// ends, or for 2 s when ctx has no deadline.
func (m *fsManager) Destroy(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx, 2*time.Second)
	defer cancel()
	var errs []error
	// An Adopt's background move ends before its cgroup goes.
	if err := m.d.endSweep(ctx, m.path); err != nil {
		errs = append(errs, err)
	}
	// Killed tasks of a frozen v1 cgroup stay until thawed (v2 lets
	// SIGKILL through).
	if dir := m.dirOf("freezer"); dir != "" && m.mode != ModeUnified {
		if s, err := readFile(dir, "freezer.state"); err == nil && strings.TrimSpace(s) != "THAWED" {
			if err := writeFile(dir, "freezer.state", "THAWED"); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	for _, h := range m.hs {
		if err := removeTree(ctx, h.dir); err != nil {
			errs = append(errs, err)
			continue
		}
		m.mu.Lock()
		made := m.created[h.mount]
		delete(m.created, h.mount)
		m.mu.Unlock()
		// DefaultParent (and a daemon's own, DerivedParent) is the
		// driver's: whoever finds it empty removes it (an Apply racing
		// with that makes it again).
		if parent := path.Dir(m.path); isDriverParent(parent) {
			if dp := filepath.Join(h.mount, parent); !slices.Contains(made, dp) {
				made = append([]string{dp}, made...)
			}
		}
		for i := len(made) - 1; i >= 0; i-- {
			if made[i] == h.dir {
				continue
			}
			// Another container's cgroup may live there now: stop quietly.
			if err := syscall.Rmdir(made[i]); err != nil && err != syscall.ENOENT {
				break
			}
		}
	}
	if s := m.spareLeft; s != nil {
		if err := s.Remove(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeTree rmdirs dir and every directory under it, deepest first.
func removeTree(ctx context.Context, dir string) error {
	// Most often there is nothing under it: listing the directory (every
	// control file of its controllers) costs more than the rmdir.
	for {
		err := syscall.Rmdir(dir)
		if err == nil || err == syscall.ENOENT {
			return nil
		}
		if err != syscall.EINTR {
			break
		}
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing cgroup %s: %w", dir, bare(err))
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			if err := removeTree(ctx, filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	wait := time.Millisecond
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if err == syscall.EINTR {
			continue
		}
		if err != syscall.EBUSY {
			return fmt.Errorf("removing cgroup %s: %w", dir, os.NewSyscallError("rmdir", err))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("removing cgroup %s: %w (still busy: %w)", dir, os.NewSyscallError("rmdir", err), context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// withDefaultTimeout bounds ctx by d when it has no deadline of its own.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
