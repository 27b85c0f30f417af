package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// ErrSystemdUnavailable is returned when systemd is not PID 1 or does not
// answer on its private socket.
var ErrSystemdUnavailable = errors.New("systemd is not available")

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
// devices, blkio); Apply makes the scope's directory in each other
// mounted v1 hierarchy and moves the pid there, as runc's v1 systemd
// driver does: in those of controllers systemd never manages (freezer,
// cpuset, ...) before the start (the first move after a while waits for
// an RCU grace period, and systemd's own moves come right after it), in
// any other the pid's /proc/PID/cgroup shows it was not moved to (a
// separately mounted cpuacct) after.
//
// Apply waits for the start job (the caller's deadline, else 30 s,
// WithJobTimeout). A unit of the same name that systemd still knows (a
// failed leftover of an earlier run) makes systemd answer UnitExists: the
// driver resets it (ResetFailedUnit) and starts again, for up to about 2 s
// while systemd collects it; an active unit that already holds the pid is
// taken as its own earlier start. Set uses SetUnitProperties (runtime,
// not persisted) and then the files. Procs and Stats read the scope's
// cgroup files (where the start put the pid, /proc/PID/cgroup, normally
// /<slice path>/<unit>; ControlGroup when that is not it or the pid is
// gone; the mount points from /proc/self/mountinfo) and
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
