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

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/proc"
)

type systemdManager struct {
	d     *Systemd
	id    string
	slice string
	unit  string
	desc  string

	mu   sync.Mutex
	path string // the scope's cgroup, relative to each hierarchy's root
}

func (m *systemdManager) cgroup() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.path
}

// fs is the scope's cgroup as the cgroupfs code sees it: for reading back,
// the v1 freezer and the files systemd has no property for.
func (m *systemdManager) fs() *fsManager {
	p := m.cgroup()
	f := &fsManager{mode: m.d.layout.Mode(), path: p, created: map[string][]string{}}
	for _, h := range m.d.layout.hierarchies() {
		f.hs = append(f.hs, managed{hierarchy: h, dir: filepath.Join(h.mount, filepath.FromSlash(p))})
	}
	return f
}

func (m *systemdManager) unified() bool { return m.d.layout.Mode() == ModeUnified }

// Apply starts the scope with pid in it and the resources as properties,
// waits for the start job, then writes what systemd has no property for.
// A failure after the start leaves the scope: the caller must Destroy.
func (m *systemdManager) Apply(ctx context.Context, pid int, r *specs.LinuxResources) error {
	if pid <= 0 {
		return fmt.Errorf("unit %s: the systemd driver needs the container's pid (got %d): a scope cannot start empty", m.unit, pid)
	}
	res, err := resourceProps(r, m.unified(), m.d.devices)
	if err != nil {
		return fmt.Errorf("unit %s: %w", m.unit, err)
	}
	props := []sddbus.Property{
		sddbus.PropDescription(m.desc),
		sddbus.PropSlice(m.slice),
		sddbus.PropPids(uint32(pid)),
		{Name: "Delegate", Value: godbus.MakeVariant(true)},
		{Name: "DefaultDependencies", Value: godbus.MakeVariant(false)},
		{Name: "MemoryAccounting", Value: godbus.MakeVariant(true)},
		{Name: "CPUAccounting", Value: godbus.MakeVariant(true)},
		{Name: "TasksAccounting", Value: godbus.MakeVariant(true)},
		{Name: "TimeoutStopUSec", Value: godbus.MakeVariant(uint64(stopTimeout / time.Microsecond))},
	}
	props = append(props, res...)
	ctx, cancel := m.d.withTimeout(ctx, "starting unit "+m.unit)
	defer cancel()
	// The hierarchies systemd never manages are joined first: the move
	// that then comes soonest after a while (the one that waits for an
	// RCU grace period) is this process's, and systemd's own, right
	// after, are quicker; a start whose job fails leaves them to Destroy.
	expected := m.cgroup()
	early, err := m.joinUnmanaged(pid, joinNever, nil)
	if err != nil {
		return fmt.Errorf("unit %s: %w", m.unit, err)
	}
	if err := m.start(ctx, pid, props); err != nil {
		return err
	}
	// Where systemd put the scope, and which hierarchies it did not
	// join: the pid's /proc/PID/cgroup says both without a call to
	// systemd when the scope is where expected; otherwise (or the pid
	// gone) ControlGroup says where.
	which := joinNotPlaced
	placed, err := proc.Cgroups(pid)
	if err != nil || systemdPath(placed) != m.cgroup() {
		var cg string
		err = m.d.call(ctx, func(c *sddbus.Conn) error {
			p, err := c.GetUnitTypePropertyContext(ctx, m.unit, "Scope", "ControlGroup")
			if err == nil {
				cg, _ = p.Value.Value().(string)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("unit %s: reading its ControlGroup: %w", m.unit, err)
		}
		if cg != "" && cg != m.cgroup() {
			m.d.log.Warn("systemd placed the scope elsewhere than expected", "unit", m.unit, "expected", m.cgroup(), "controlGroup", cg)
			m.mu.Lock()
			m.path = cg
			m.mu.Unlock()
		}
		which = joinMissing
	}
	if _, err := m.joinUnmanaged(pid, which, placed); err != nil {
		return fmt.Errorf("unit %s: %w", m.unit, err)
	}
	// Joined at the expected path, which is not the scope's: the pid has
	// left those directories.
	if m.cgroup() != expected {
		for _, dir := range early {
			if err := syscall.Rmdir(dir); err != nil {
				m.d.log.Warn("unable to remove a cgroup made for the scope at the expected path", "unit", m.unit, "dir", dir, "err", err)
			}
		}
	}
	if err := m.fs().set(fsResidue(r)); err != nil {
		return fmt.Errorf("unit %s: %w", m.unit, err)
	}
	return nil
}

// neverSystemd are the v1 controllers systemd does not manage (it makes
// no directory in their hierarchies): Apply joins them before the start.
var neverSystemd = []string{"freezer", "cpuset", "perf_event", "net_cls", "net_prio", "hugetlb", "rdma", "misc"}

// systemdPath is the scope's cgroup in placed (a /proc/PID/cgroup, see
// proc.Cgroups): the name=systemd hierarchy's on v1, the cgroup2 one's
// on a unified host; "" when placed has neither.
func systemdPath(placed map[string]string) string {
	if p, ok := placed["name=systemd"]; ok {
		return p
	}
	if len(placed) == 1 {
		return placed[""]
	}
	return ""
}

// joinWhich says which hierarchies joinUnmanaged joins.
type joinWhich int

const (
	// joinNever, before the start: those of neverSystemd.
	joinNever joinWhich = iota
	// joinNotPlaced, after: each where the pid is not in the scope's
	// cgroup, as its /proc/PID/cgroup (placed) says.
	joinNotPlaced
	// joinMissing, after, placed unknown (the pid's file unreadable):
	// each where the scope's directory does not exist.
	joinMissing
)

// joinUnmanaged puts pid in the scope's cgroup in each v1 hierarchy where
// systemd does not (it manages only the v1 controllers it knows: cpu,
// cpuacct only when co-mounted with cpu, memory, pids, devices, blkio, and
// name=systemd), as runc's v1 systemd driver does: the freezer (Freeze on
// v1), cpuset (linux.resources.cpu.cpus/mems), a separately mounted
// cpuacct (CPU stats), ... The directories are made like the cgroupfs
// driver makes them; Destroy removes them.
//
// It returns the directories it put pid in.
func (m *systemdManager) joinUnmanaged(pid int, which joinWhich, placed map[string]string) ([]string, error) {
	if m.unified() {
		return nil, nil
	}
	byName := map[string]string{}
	for k, p := range placed {
		for _, n := range strings.Split(k, ",") {
			byName[n] = p
		}
	}
	v := strconv.Itoa(pid)
	p := m.cgroup()
	var joined []string
	for _, h := range m.fs().hs {
		if h.names == nil {
			continue
		}
		switch which {
		case joinNever:
			if !slices.ContainsFunc(h.names, func(n string) bool { return slices.Contains(neverSystemd, n) }) {
				continue
			}
		case joinNotPlaced:
			if byName[h.names[0]] == p {
				continue
			}
		case joinMissing:
			if exists(h.dir) {
				continue
			}
		}
		made, err := mkdirs(h.mount, p)
		if err != nil {
			return joined, err
		}
		if slices.Contains(h.names, "cpuset") {
			if err := initCpuset(h.mount, p, made); err != nil {
				return joined, err
			}
		}
		if err := appendFile(h.dir, "cgroup.procs", v); err != nil {
			return joined, fmt.Errorf("moving pid %d into %s: %w", pid, h.dir, err)
		}
		joined = append(joined, h.dir)
	}
	return joined, nil
}

// start starts the transient scope. A unit of the same name that systemd
// still knows (a failed or inactive leftover) is reset and the start
// retried; an active one that already holds pid is our own earlier start
// whose reply was lost to a dropped connection.
func (m *systemdManager) start(ctx context.Context, pid int, props []sddbus.Property) error {
	err := m.startOnce(ctx, props)
	if !isDBusError(err, errUnitExists) {
		return err
	}
	for attempt := 0; attempt < 20; attempt++ {
		if err := m.resetFailed(ctx); err != nil {
			return fmt.Errorf("unit %s exists; resetting it: %w", m.unit, err)
		}
		if attempt == 0 {
			m.d.log.Info("unit exists; reset it and retrying", "unit", m.unit)
		}
		err = m.startOnce(ctx, props)
		if !isDBusError(err, errUnitExists) {
			return err
		}
		if ours, oerr := m.holds(ctx, pid); oerr == nil && ours {
			return nil
		}
		// Removing the reset unit is systemd's next garbage collection.
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond * time.Duration(attempt+1)):
		}
	}
	return fmt.Errorf("unit %s: %w (it stays after reset-failed: an active unit of that name holds other processes)", m.unit, err)
}

func (m *systemdManager) startOnce(ctx context.Context, props []sddbus.Property) error {
	return m.d.job(ctx, "starting unit "+m.unit, func(c *sddbus.Conn, ch chan<- string) error {
		_, err := c.StartTransientUnitContext(ctx, m.unit, "replace", props, ch)
		if err != nil {
			return fmt.Errorf("starting unit %s: %w", m.unit, err)
		}
		return nil
	}, func(ctx context.Context) (bool, error) {
		st, err := m.activeState(ctx)
		return st == "active", err
	})
}

// holds reports whether pid is in the unit's cgroup.
func (m *systemdManager) holds(ctx context.Context, pid int) (bool, error) {
	var name string
	err := m.d.call(ctx, func(c *sddbus.Conn) error {
		var err error
		name, err = c.GetUnitNameByPID(ctx, uint32(pid))
		return err
	})
	return name == m.unit, err
}

// activeState is the unit's ActiveState; "" when systemd does not know it.
func (m *systemdManager) activeState(ctx context.Context) (string, error) {
	var st string
	err := m.d.call(ctx, func(c *sddbus.Conn) error {
		p, err := c.GetUnitPropertyContext(ctx, m.unit, "ActiveState")
		if err == nil {
			st, _ = p.Value.Value().(string)
		}
		return err
	})
	if isDBusError(err, errNoSuchUnit) {
		return "", nil
	}
	return st, err
}

func (m *systemdManager) resetFailed(ctx context.Context) error {
	err := m.d.call(ctx, func(c *sddbus.Conn) error { return c.ResetFailedUnitContext(ctx, m.unit) })
	if isDBusError(err, errNoSuchUnit) {
		return nil
	}
	return err
}

// fsResidue is what of r the driver writes to the cgroup files itself,
// after systemd: everything but the device rules (DevicePolicy and
// DeviceAllow, which systemd would undo). This repeats the limits systemd
// just set (the same values; on v1 the files in the order the kernel
// accepts) and adds what has no property here.
func fsResidue(r *specs.LinuxResources) *specs.LinuxResources {
	if r == nil {
		return nil
	}
	c := *r
	c.Devices = nil
	return &c
}

// Set changes the unit's properties at runtime (SetUnitProperties, not
// persisted), then writes the rest to the files as Apply does.
func (m *systemdManager) Set(ctx context.Context, r *specs.LinuxResources) error {
	props, err := resourceProps(r, m.unified(), m.d.devices)
	if err != nil {
		return fmt.Errorf("unit %s: %w", m.unit, err)
	}
	ctx, cancel := m.d.withTimeout(ctx, "setting properties of unit "+m.unit)
	defer cancel()
	if len(props) > 0 {
		err := m.d.call(ctx, func(c *sddbus.Conn) error { return c.SetUnitPropertiesContext(ctx, m.unit, true, props...) })
		if isDBusError(err, errNoSuchUnit) {
			return fmt.Errorf("unit %s: %w", m.unit, ErrNotExist)
		}
		if err != nil {
			return fmt.Errorf("setting properties of unit %s: %w", m.unit, err)
		}
	}
	f := m.fs()
	if err := f.mustExist(); err != nil {
		return fmt.Errorf("unit %s: %w", m.unit, err)
	}
	if err := f.set(fsResidue(r)); err != nil {
		return fmt.Errorf("unit %s: %w", m.unit, err)
	}
	return nil
}

// Procs reads cgroup.procs of the scope (see fsManager.Procs).
func (m *systemdManager) Procs(ctx context.Context) ([]int, error) { return m.fs().Procs(ctx) }

// Stats reads the scope's cgroup files (see fsManager.Stats).
func (m *systemdManager) Stats(ctx context.Context) (*Stats, error) { return m.fs().Stats(ctx) }

// Freeze freezes or thaws the scope through systemd's FreezeUnit and
// ThawUnit (cgroup v2, systemd 246 and later; systemd replies once the
// kernel says frozen). Where systemd cannot (cgroup v1 and hybrid: "does
// not support freezing"), it uses the v1 freezer files of the scope, which
// systemd leaves alone.
func (m *systemdManager) Freeze(ctx context.Context, frozen bool) error {
	ctx, cancel := m.d.withTimeout(ctx, "freezing unit "+m.unit)
	defer cancel()
	err := m.d.call(ctx, func(c *sddbus.Conn) error {
		if frozen {
			return c.FreezeUnit(ctx, m.unit)
		}
		return c.ThawUnit(ctx, m.unit)
	})
	switch {
	case err == nil:
		return nil
	case isDBusError(err, errNoSuchUnit):
		return fmt.Errorf("unit %s: %w", m.unit, ErrNotExist)
	case isDBusError(err, errNotSupported), isDBusError(err, errUnknownMeth):
		if ferr := m.fs().Freeze(ctx, frozen); ferr != nil {
			return fmt.Errorf("unit %s: systemd cannot freeze it (%v), nor can the cgroup files: %w", m.unit, err, ferr)
		}
		return nil
	}
	return fmt.Errorf("freezing unit %s: %w", m.unit, err)
}

// Destroy thaws the scope, stops it (systemd kills what is left: SIGTERM,
// SIGKILL after TimeoutStopSec), waits for the stop job, resets a failed
// state so systemd forgets the unit, and removes a scope directory that
// systemd left in a hierarchy it does not manage. A unit systemd does not
// know is no error.
func (m *systemdManager) Destroy(ctx context.Context) error {
	ctx, cancel := m.d.withTimeout(ctx, "stopping unit "+m.unit)
	defer cancel()
	var errs []error
	// Killed tasks of a frozen cgroup cannot exit before a thaw.
	if err := m.thaw(ctx); err != nil {
		errs = append(errs, err)
	}
	// A unit systemd does not know (also when queueing again after a
	// dropped connection: it stopped and was collected) is stopped.
	err := m.d.job(ctx, "stopping unit "+m.unit, func(c *sddbus.Conn, ch chan<- string) error {
		_, err := c.StopUnitContext(ctx, m.unit, "replace", ch)
		if err != nil {
			return fmt.Errorf("stopping unit %s: %w", m.unit, err)
		}
		return nil
	}, func(ctx context.Context) (bool, error) {
		st, err := m.activeState(ctx)
		return st == "" || st == "inactive" || st == "failed", err
	})
	if err != nil && !isDBusError(err, errNoSuchUnit) {
		errs = append(errs, err)
	}
	if err := m.resetFailed(ctx); err != nil {
		errs = append(errs, fmt.Errorf("resetting unit %s: %w", m.unit, err))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// What is left is in the hierarchies systemd does not manage
	// (joinUnmanaged): the scope's directory, then its slices' while empty.
	p := m.cgroup()
	for _, h := range m.fs().hs {
		if !exists(h.dir) {
			continue
		}
		if err := removeTree(ctx, h.dir); err != nil {
			errs = append(errs, err)
			continue
		}
		for dir := path.Dir(p); dir != "/" && dir != "."; dir = path.Dir(dir) {
			// Another container's scope may be there: stop quietly.
			if err := syscall.Rmdir(filepath.Join(h.mount, filepath.FromSlash(dir))); err != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// thaw thaws a frozen scope before it is stopped: ThawUnit, or on v1 the
// freezer file when it says frozen. A missing unit or file is no error.
func (m *systemdManager) thaw(ctx context.Context) error {
	err := m.d.call(ctx, func(c *sddbus.Conn) error { return c.ThawUnit(ctx, m.unit) })
	switch {
	case err == nil, isDBusError(err, errNoSuchUnit):
		return nil
	case isDBusError(err, errNotSupported), isDBusError(err, errUnknownMeth):
		dir := m.fs().dirOf("freezer")
		if dir == "" {
			return nil
		}
		s, rerr := readFile(dir, "freezer.state")
		if errors.Is(rerr, os.ErrNotExist) || rerr == nil && strings.TrimSpace(s) == "THAWED" {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		return writeFile(dir, "freezer.state", "THAWED")
	}
	return fmt.Errorf("thawing unit %s: %w", m.unit, err)
}

// Paths maps each hierarchy where the scope's directory exists to it.
func (m *systemdManager) Paths() map[string]string {
	out := map[string]string{}
	for k, dir := range m.fs().Paths() {
		if exists(dir) {
			out[k] = dir
		}
	}
	return out
}

// Unit is the scope's name, for logs and `systemctl status`.
func (m *systemdManager) Unit() string { return m.unit }
