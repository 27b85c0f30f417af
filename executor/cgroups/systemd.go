package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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
)

// ErrSystemdUnavailable is returned when systemd is not PID 1 or does not
// answer on its private socket.
var ErrSystemdUnavailable = errors.New("systemd is not available")

// D-Bus error names the driver acts on.
const (
	errUnitExists   = "org.freedesktop.systemd1.UnitExists"
	errNoSuchUnit   = "org.freedesktop.systemd1.NoSuchUnit"
	errNotSupported = "org.freedesktop.DBus.Error.NotSupported"
	errUnknownMeth  = "org.freedesktop.DBus.Error.UnknownMethod"
)

const (
	// defaultJobTimeout bounds the wait for a start or stop job, and for
	// reconnecting, when ctx has no deadline.
	defaultJobTimeout = 30 * time.Second
	// stopTimeout is the scope's TimeoutStopSec: how long systemd waits
	// after SIGTERM before SIGKILL when it stops the scope itself.
	stopTimeout = 10 * time.Second
)

// Systemd is the systemd cgroup driver. It is safe for concurrent use.
//
// Each container's init is placed, by StartTransientUnit over systemd's
// private socket (/run/systemd/private, root only; no D-Bus daemon
// needed), in a transient scope: reconciled-<id>.scope in reconciled.slice,
// or what a linux.cgroupsPath in runc's "slice:prefix:name" form names
// (prefix-name.scope in slice; an empty slice is reconciled.slice). The
// scope has PIDs=<init>, Delegate=yes (the container may make sub-cgroups),
// DefaultDependencies=no, Memory-, CPU- and TasksAccounting, a Description
// (WithDescription, DescribedManager), TimeoutStopSec=10s, and the
// resources as properties:
//
//	spec                  cgroup v1 (legacy, hybrid)     cgroup v2
//	memory.limit          MemoryLimit                    MemoryMax
//	memory.swap           (file, see below)              MemorySwapMax = swap - limit
//	memory.reservation    (file)                         MemoryLow
//	cpu.shares            CPUShares                      CPUWeight (SharesToWeight)
//	cpu.quota, period     CPUQuotaPerSecUSec = quota*1s/period (rounded up),
//	                      CPUQuotaPeriodUSec = period
//	pids.limit            TasksMax (infinity for <= 0)
//	devices               DevicePolicy=strict + DeviceAllow (see deviceProps),
//	                      or DevicePolicy=auto when all are allowed
//
// -1 limits are "infinity". After systemd, the driver writes every
// resource but the device rules to the scope's files with the cgroupfs
// code, in the order the kernel accepts: this repeats systemd's values
// (and fixes a v1 memory limit that systemd could not raise above the old
// memsw limit) and adds what has no property here (v1 swap, swappiness,
// cpusets, burst, unified). Device rules are left to systemd, which would
// otherwise rewrite them whenever it re-applies the unit's properties; on
// v2 systemd enforces them with its own eBPF program (the cgroupfs
// driver attaches one of its own instead; see the package documentation).
//
// On v1, systemd creates the scope only in the hierarchies it manages
// (name=systemd, memory, cpu, cpuacct when co-mounted with cpu, pids,
// devices, blkio); Apply then makes the scope's directory in each other
// mounted v1 hierarchy (freezer, cpuset, a separate cpuacct ...) and moves
// the pid there, as runc's v1 systemd driver does.
//
// Apply waits for the start job (the caller's deadline, else 30 s,
// WithJobTimeout). A unit of the same name that systemd still knows (a
// failed leftover of an earlier run) makes systemd answer UnitExists: the
// driver resets it (ResetFailedUnit) and starts again, for up to about 2 s
// while systemd collects it; an active unit that already holds the pid is
// taken as its own earlier start. Set uses SetUnitProperties (runtime,
// not persisted) and then the files. Procs and Stats read the scope's
// cgroup files (ControlGroup, read back after the start, normally
// /<slice path>/<unit>; the mount points from /proc/self/mountinfo) and
// need no systemd. Freeze uses FreezeUnit/ThawUnit (systemd 246, cgroup v2
// only); where systemd answers "does not support freezing" (v1, hybrid) it
// uses the scope's v1 freezer. Destroy thaws, StopUnit (systemd sends
// SIGTERM, then SIGKILL after 10 s, to what is left) and waits for the
// job, ResetFailedUnit, then removes the directories Apply made outside
// systemd's hierarchies (and their slices' while empty). A missing unit is
// no error. A `systemctl stop` of the scope by someone else kills the
// container: the daemon sees its init exit.
//
// The driver holds one connection to systemd and no per-container state:
// unit names derive from the container's id. When systemd drops the
// connection (daemon-reexec, a restart), the next call
// reconnects, retrying the dial until its context ends (systemd takes a
// moment to come back), and runs again. A job (start, stop) is waited for
// on the connection it was queued on: when that one dropped, or another
// call already replaced it, its JobRemoved signal is lost, and the unit's
// ActiveState, read on the new connection, decides; when the goal is not
// reached yet, the job is queued once more on the new connection.
type Systemd struct {
	log        *slog.Logger
	layout     Layout
	describe   func(id string) string
	jobTimeout time.Duration
	socket     string
	devices    func() (io.ReadCloser, error)

	// base is the lifetime of every connection (godbus closes a
	// connection when the context it was dialled with ends).
	base   context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	conn *sddbus.Conn
}

// SystemdOption configures NewSystemd.
type SystemdOption func(*Systemd)

// WithSystemdLogger sets where the driver logs reconnects and cleanup
// trouble.
func WithSystemdLogger(l *slog.Logger) SystemdOption { return func(d *Systemd) { d.log = l } }

// WithDescription sets the unit Description= for a container id (default
// "reconciled container <id>"); DescribedManager overrides it per call.
func WithDescription(f func(id string) string) SystemdOption {
	return func(d *Systemd) { d.describe = f }
}

// WithJobTimeout bounds the wait for a systemd job (start, stop) when the
// caller's context has no deadline (default 30 s).
func WithJobTimeout(t time.Duration) SystemdOption { return func(d *Systemd) { d.jobTimeout = t } }

// SystemdSocket is systemd's private D-Bus socket (root only), what
// go-systemd's NewSystemdConnectionContext dials.
const SystemdSocket = "/run/systemd/private"

// NewSystemd connects to systemd over its private socket and returns the
// driver. It fails with ErrSystemdUnavailable when systemd does not
// answer.
func NewSystemd(ctx context.Context, opts ...SystemdOption) (*Systemd, error) {
	l, err := DetectLayout()
	if err != nil {
		return nil, fmt.Errorf("detecting the cgroup layout: %w", err)
	}
	d := &Systemd{
		log:        slog.New(slog.DiscardHandler),
		layout:     l,
		describe:   func(id string) string { return "reconciled container " + id },
		jobTimeout: defaultJobTimeout,
		socket:     SystemdSocket,
	}
	for _, o := range opts {
		o(d)
	}
	d.base, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if _, err := d.getConn(ctx); err != nil {
		d.cancel()
		return nil, err
	}
	return d, nil
}

// SystemdAvailable reports whether the systemd driver can be used: systemd
// is PID 1 (/run/systemd/system exists, or PID 1's comm is systemd) and
// answers on its private socket before ctx ends.
func SystemdAvailable(ctx context.Context) bool {
	if !systemdBooted() {
		return false
	}
	c, err := dialSystemd(ctx, ctx, SystemdSocket)
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = c.SystemStateContext(ctx)
	return err == nil
}

func systemdBooted() bool {
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		return true
	}
	comm, err := os.ReadFile("/proc/1/comm")
	return err == nil && strings.TrimSpace(string(comm)) == "systemd"
}

// NewAuto returns the systemd driver when systemd is PID 1 and answers
// (SystemdAvailable), the cgroupfs driver otherwise: --cgroup-driver auto.
func NewAuto(ctx context.Context, opts ...SystemdOption) (Driver, error) {
	if SystemdAvailable(ctx) {
		return NewSystemd(ctx, opts...)
	}
	return NewCgroupfs()
}

// Name is "systemd".
func (d *Systemd) Name() string { return "systemd" }

// Close closes the connection to systemd. Managers made by d stop working.
func (d *Systemd) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	d.cancel()
	return nil
}

// Manager returns the manager of container id's scope: reconciled-<id>.scope
// in reconciled.slice when cgroupsPath is empty, else the unit that runc's
// "slice:prefix:name" names. It talks to nobody.
func (d *Systemd) Manager(id, cgroupsPath string) (Manager, error) {
	return d.DescribedManager(id, cgroupsPath, "")
}

// DescribedManager is Manager with the unit's Description= given (the
// manifest the container comes from); "" uses the driver's default.
func (d *Systemd) DescribedManager(id, cgroupsPath, description string) (Manager, error) {
	slice, unit, err := unitNames(id, cgroupsPath)
	if err != nil {
		return nil, err
	}
	parent, err := expandSlice(slice)
	if err != nil {
		return nil, err
	}
	if description == "" {
		description = d.describe(id)
	}
	return &systemdManager{d: d, id: id, slice: slice, unit: unit, desc: description, path: parent + "/" + unit}, nil
}

// dialSystemd connects to systemd's private socket. The connection lives
// until life ends (or Close); the dial itself gives up when ctx ends.
func dialSystemd(ctx, life context.Context, socket string) (*sddbus.Conn, error) {
	type result struct {
		c   *sddbus.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// go-systemd dials twice, one connection for calls and one for
		// signals. On its private socket systemd sends every signal to
		// every connection, so a second one only doubles what this
		// process reads (6-7 signals per scope started): both get the
		// same connection (Close of it twice is harmless).
		var shared *godbus.Conn
		c, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
			if shared != nil {
				return shared, nil
			}
			conn, err := godbus.Dial("unix:path="+socket, godbus.WithContext(life))
			if err != nil {
				return nil, err
			}
			// EXTERNAL by uid, no user lookup (as go-systemd does).
			if err := conn.Auth([]godbus.Auth{godbus.AuthExternal(fmt.Sprint(os.Getuid()))}); err != nil {
				conn.Close()
				return nil, err
			}
			shared = conn
			return conn, nil
		})
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("connecting to systemd at %s: %w: %w", socket, ErrSystemdUnavailable, r.err)
		}
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("connecting to systemd at %s: %w: %w", socket, ErrSystemdUnavailable, context.Cause(ctx))
	}
}

// getConn returns the live connection, dialling a new one when there is
// none or systemd dropped it.
func (d *Systemd) getConn(ctx context.Context) (*sddbus.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.base.Err() != nil {
		return nil, errDriverClosed
	}
	if d.conn != nil && d.conn.Connected() {
		return d.conn, nil
	}
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
		d.log.Info("systemd connection lost; reconnecting")
	}
	c, err := dialSystemd(ctx, d.base, d.socket)
	if err != nil {
		return nil, err
	}
	d.conn = c
	return c, nil
}

// drop closes c, a connection that failed a write, so that the next
// getConn dials a new one. After a daemon-reexec a write can fail (EPIPE)
// before godbus has read the end of the connection and marked it closed:
// c.Connected() still says yes.
func (d *Systemd) drop(c *sddbus.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == c {
		d.conn = nil
	}
	c.Close()
}

// connBroken reports whether err says the connection itself failed (the
// peer went away), not the call.
func connBroken(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, godbus.ErrClosed)
}

// errDriverClosed is what a closed driver returns.
var errDriverClosed = errors.New("systemd driver: closed")

// errJobLost is what waitJob returns when the connection a job was queued
// on dropped before the job's JobRemoved signal came, and the unit's state
// does not (yet) show the job's goal: job then queues it once more.
var errJobLost = errors.New("the connection to systemd dropped before the job's result came")

// withTimeout gives ctx the driver's job timeout when it has no deadline.
func (d *Systemd) withTimeout(ctx context.Context, what string) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d.jobTimeout, fmt.Errorf("%s took over %s", what, d.jobTimeout))
}

// call runs op on the connection. When op fails because systemd dropped
// the connection (daemon-reexec, bus restart), it reconnects, retrying
// the dial until ctx ends (systemd may be re-executing), and runs op
// again.
func (d *Systemd) call(ctx context.Context, op func(*sddbus.Conn) error) error {
	wait := 5 * time.Millisecond
	for {
		c, err := d.getConn(ctx)
		if err == nil {
			err = op(c)
			if err == nil || isDBusError(err, "") || c.Connected() && !connBroken(err) {
				return err
			}
			d.drop(c)
			d.log.Info("systemd dropped the connection; reconnecting", "err", err)
		}
		if errors.Is(err, errDriverClosed) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up reconnecting: %w)", err, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// isDBusError reports whether err is a D-Bus error reply named name (any
// name when name is "").
func isDBusError(err error, name string) bool {
	var e godbus.Error
	if errors.As(err, &e) {
		return name == "" || e.Name == name
	}
	var pe *godbus.Error
	if errors.As(err, &pe) && pe != nil {
		return name == "" || pe.Name == name
	}
	return false
}

// job queues a job (queue, on the driver's connection, with ch to receive
// its result) and waits for it (waitJob). When the connection it was
// queued on drops first (errJobLost), it queues the job once more, on the
// new connection: systemd merges it into the same job when that is still
// running after a re-exec, or finishes it at once when the goal was
// reached meanwhile. queue's own errors are returned as they are.
func (d *Systemd) job(ctx context.Context, what string, queue func(c *sddbus.Conn, ch chan<- string) error, check func(context.Context) (bool, error)) error {
	for attempt := 0; ; attempt++ {
		ch := make(chan string, 1)
		var used *sddbus.Conn
		err := d.call(ctx, func(c *sddbus.Conn) error {
			used = c
			return queue(c, ch)
		})
		if err != nil {
			return err
		}
		err = d.waitJob(ctx, used, ch, what, check)
		if !errors.Is(err, errJobLost) || attempt > 0 {
			return err
		}
		d.log.Info("systemd dropped the connection during a job; queueing it again", "job", what)
	}
}

// lost reports whether used, the connection a job was queued on, can no
// longer deliver the job's JobRemoved signal: systemd dropped it, or
// another call already replaced it (then used is dead too, and checking
// only the driver's current connection would wait for a signal that never
// comes).
func (d *Systemd) lost(used *sddbus.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return used != d.conn || !used.Connected()
}

// waitJob waits for the result of a job queued on used, on ch. When used
// is lost (lost), check decides from the unit's state, read on the current
// connection, whether the job's goal was reached: yes is success, no is
// errJobLost. When ctx ends first, check decides too.
func (d *Systemd) waitJob(ctx context.Context, used *sddbus.Conn, ch <-chan string, what string, check func(context.Context) (bool, error)) error {
	result := func(res string) error {
		if res == "done" {
			return nil
		}
		return fmt.Errorf("%s: systemd job %s", what, res)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case res := <-ch:
			return result(res)
		case <-tick.C:
			if !d.lost(used) {
				continue
			}
			// The result may have come just before the drop.
			select {
			case res := <-ch:
				return result(res)
			default:
			}
			ok, err := check(ctx)
			if err != nil {
				return fmt.Errorf("%s: the connection to systemd dropped during the job: %w", what, err)
			}
			if ok {
				return nil
			}
			return fmt.Errorf("%s: %w", what, errJobLost)
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			ok, err := check(cctx)
			cancel()
			if err == nil && ok {
				return nil
			}
			return fmt.Errorf("%s: waiting for the systemd job: %w", what, context.Cause(ctx))
		}
	}
}

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
	if err := m.start(ctx, pid, props); err != nil {
		return err
	}
	// systemd says where it put the scope; normally where expandSlice did.
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
	if err := m.joinUnmanaged(pid); err != nil {
		return fmt.Errorf("unit %s: %w", m.unit, err)
	}
	if err := m.fs().set(fsResidue(r)); err != nil {
		return fmt.Errorf("unit %s: %w", m.unit, err)
	}
	return nil
}

// joinUnmanaged puts pid in the scope's cgroup in each v1 hierarchy where
// systemd did not (it manages only the v1 controllers it knows: cpu,
// cpuacct only when co-mounted with cpu, memory, pids, devices, blkio, and
// name=systemd), as runc's v1 systemd driver does: the freezer (Freeze on
// v1), cpuset (linux.resources.cpu.cpus/mems), a separately mounted
// cpuacct (CPU stats), ... The directories are made like the cgroupfs
// driver makes them; Destroy removes them.
func (m *systemdManager) joinUnmanaged(pid int) error {
	if m.unified() {
		return nil
	}
	v := strconv.Itoa(pid)
	p := m.cgroup()
	for _, h := range m.fs().hs {
		if h.names == nil || exists(h.dir) {
			continue
		}
		if _, err := mkdirs(h.mount, p); err != nil {
			return err
		}
		if slices.Contains(h.names, "cpuset") {
			if err := initCpuset(h.mount, p); err != nil {
				return err
			}
		}
		if err := appendFile(h.dir, "cgroup.procs", v); err != nil {
			return fmt.Errorf("moving pid %d into %s: %w", pid, h.dir, err)
		}
	}
	return nil
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
