package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/reconciler"
)

// spec.notify: the daemon's notify socket for a container (podman's
// --sdnotify=container). It is the abstract unix datagram socket
// desired.NotifySocket names, bound in the container's network namespace
// before its process starts: with network: private only the container
// reaches it; with network: host every process on the host does, so a
// message counts only when its sender (SCM_CREDENTIALS) is in the
// container's cgroup. READY=1 makes the container ready for this run;
// STATUS= is shown in status.

// maxNotifyStatus bounds the STATUS= text kept.
const maxNotifyStatus = 256

// notifySocket is the notify socket of one run of a container.
type notifySocket struct {
	pid    int
	start  uint64
	host   bool // network: host: check the sender's cgroup
	conn   *net.UnixConn
	ready  bool   // guarded by healthManager.mu
	status string // guarded by healthManager.mu
}

// listenInNetns binds the abstract datagram socket addr in the network
// namespace of process pid (started at start; see inNetns).
func listenInNetns(pid int, start uint64, addr string) (*net.UnixConn, error) {
	ns, err := openNetns(pid, start)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var c *net.UnixConn
	if err := inNetns(ns, func() (err error) {
		c, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
		return err
	}); err != nil {
		if c != nil {
			c.Close()
		}
		return nil, err
	}
	raw, err := c.SyscallConn()
	if err == nil {
		var serr error
		err = raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
		if err == nil {
			err = serr
		}
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("unable to ask for the senders' credentials: %w", err)
	}
	return c, nil
}

// listenNotifyLocked makes sure container name's run (pid, start) has its
// notify socket. m.mu is held.
func (m *healthManager) listenNotifyLocked(name string, pid int, start uint64, def *desired.Container) error {
	if n := m.notifiers[name]; n != nil {
		if n.pid == pid && n.start == start {
			return nil
		}
		n.conn.Close()
		delete(m.notifiers, name)
	}
	conn, err := listenInNetns(pid, start, desired.NotifySocket(name))
	if err != nil {
		return fmt.Errorf("unable to make the notify socket of container %s: %w", name, err)
	}
	n := &notifySocket{pid: pid, start: start, conn: conn, host: def.Manifest.Spec.Network != desired.NetworkPrivate}
	// A run adopted from an earlier daemon keeps the READY=1 it sent
	// that daemon; a new run starts not ready.
	if n.ready, n.status = m.loadReady(name, pid, start); !n.ready {
		m.forgetReady(name)
	}
	m.notifiers[name] = n
	m.wg.Go(func() { m.readNotify(name, n) })
	return nil
}

func (m *healthManager) stopNotifyLocked(name string) {
	if n := m.notifiers[name]; n != nil {
		n.conn.Close()
		delete(m.notifiers, name)
	}
}

// readNotify reads container name's notify messages until its socket is
// closed.
func (m *healthManager) readNotify(name string, n *notifySocket) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		nb, noob, _, _, err := n.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return // closed
		}
		if n.host && !m.fromContainer(n, oob[:noob]) {
			m.log.Warn("notify message not from the container, ignored", "container", name)
			continue
		}
		ready, status, hasStatus := parseNotify(buf[:nb])
		m.mu.Lock()
		if m.notifiers[name] != n {
			m.mu.Unlock()
			return
		}
		changed := ready && !n.ready
		if ready {
			n.ready = true
		}
		kick := changed || (hasStatus && status != n.status)
		if hasStatus {
			n.status = status
		}
		if kick && n.ready {
			m.saveReady(name, n, n.status)
		}
		dependents := m.dependentsLocked(name)
		m.mu.Unlock()
		if changed {
			m.events.add(name, Event{Time: m.now(), Action: "ready", Reason: "ready: READY=1 on the notify socket"})
			m.log.Info("ready", "container", name)
		}
		if kick {
			m.changed(name)
		}
		if changed {
			for _, d := range dependents {
				m.changed(d)
			}
		}
	}
}

// fromContainer says whether the message's sender (its SCM_CREDENTIALS)
// runs in the same cgroup as the container's init.
func (m *healthManager) fromContainer(n *notifySocket, oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, msg := range msgs {
		cred, err := unix.ParseUnixCredentials(&msg)
		if err != nil {
			continue
		}
		want, err1 := os.ReadFile("/proc/" + strconv.Itoa(n.pid) + "/cgroup")
		got, err2 := os.ReadFile("/proc/" + strconv.Itoa(int(cred.Pid)) + "/cgroup")
		return err1 == nil && err2 == nil && bytes.Equal(want, got)
	}
	return false
}

// parseNotify reads an sd_notify message: newline-separated KEY=VALUE.
func parseNotify(b []byte) (ready bool, status string, hasStatus bool) {
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case l == "READY=1":
			ready = true
		case strings.HasPrefix(l, "STATUS="):
			status, hasStatus = strings.TrimPrefix(l, "STATUS="), true
			if len(status) > maxNotifyStatus {
				status = status[:maxNotifyStatus] + "…"
			}
		}
	}
	return ready, status, hasStatus
}

// dependentsLocked returns the wanted containers whose spec.after names
// name.
func (m *healthManager) dependentsLocked(name string) []string {
	var out []string
	for n, c := range m.want {
		for _, d := range c.After() {
			if d.Name == name {
				out = append(out, n)
			}
		}
	}
	return out
}

// notifyingExecutor makes the notify socket of a container with
// spec.notify before its process starts, so that no message is lost: a
// container is never started without it.
type notifyingExecutor struct {
	reconciler.Executor
	health  *healthManager
	observe func(ctx context.Context, name string) (*actual.Container, error)
}

// CreateStart is reconciler.CreateStarter: in one call where the wrapped
// executor can and the container has no notify socket to make between
// the two (its init's PID is only known once it is created).
func (e notifyingExecutor) CreateStart(ctx context.Context, id string, spec *specs.Spec) (bool, error) {
	cs, ok := e.Executor.(reconciler.CreateStarter)
	if ok && !e.notifies(id) {
		return cs.CreateStart(ctx, id, spec)
	}
	if err := e.Executor.Create(ctx, id, spec); err != nil {
		return false, err
	}
	return true, e.Start(ctx, id)
}

// notifies says whether container id's definition has spec.notify.
func (e notifyingExecutor) notifies(id string) bool {
	e.health.mu.Lock()
	defer e.health.mu.Unlock()
	return e.health.want[id].Notify()
}

func (e notifyingExecutor) Start(ctx context.Context, id string) error {
	e.health.mu.Lock()
	def := e.health.want[id]
	e.health.mu.Unlock()
	if def.Notify() {
		c, err := e.observe(ctx, id)
		if err != nil {
			return err
		}
		if c == nil || !c.InitAlive {
			return fmt.Errorf("container %s has no live init to start", id)
		}
		e.health.mu.Lock()
		err = e.health.listenNotifyLocked(id, c.Pid, c.PidStartTime, def)
		e.health.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return e.Executor.Start(ctx, id)
}

// readyRecord is what STATE/notify/NAME.json holds: the run (init PID and
// start time) that said READY=1. Version 1.
type readyRecord struct {
	Version      int    `json:"version"`
	Pid          int    `json:"pid"`
	PidStartTime uint64 `json:"pidStartTime"`
	Status       string `json:"status,omitempty"`
}

// saveReady records that container name's run said READY=1.
func (m *healthManager) saveReady(name string, n *notifySocket, status string) {
	if m.readyDir == "" {
		return
	}
	if err := os.MkdirAll(m.readyDir, 0o700); err != nil {
		m.log.Warn("unable to record readiness", "container", name, "err", err)
		return
	}
	rec := readyRecord{Version: 1, Pid: n.pid, PidStartTime: n.start, Status: status}
	if err := atomicfile.WriteJSON(m.readyDir, name+".json", rec, 0o600, atomicfile.NoSync); err != nil {
		m.log.Warn("unable to record readiness", "container", name, "err", err)
	}
}

// loadReady says whether container name's run (pid, start) said READY=1
// to an earlier daemon, and its last STATUS= then.
func (m *healthManager) loadReady(name string, pid int, start uint64) (bool, string) {
	if m.readyDir == "" {
		return false, ""
	}
	data, err := os.ReadFile(filepath.Join(m.readyDir, name+".json"))
	if err != nil {
		return false, ""
	}
	var rec readyRecord
	if json.Unmarshal(data, &rec) != nil || rec.Version != 1 || rec.Pid != pid || rec.PidStartTime != start {
		return false, ""
	}
	return true, rec.Status
}

// forgetReady removes container name's ready record.
func (m *healthManager) forgetReady(name string) {
	if m.readyDir == "" {
		return
	}
	if err := os.Remove(filepath.Join(m.readyDir, name+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.Warn("unable to remove a ready record", "container", name, "err", err)
	}
}
