package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// maxProbeOutput bounds what is kept of a probe's output (status NAME).
const maxProbeOutput = 1024

// Health is a container's health as status shows it (health.go).
type Health struct {
	State    actual.HealthState
	Ready    bool
	Failures int
	// Output is the last probe's result, bounded: "http GET :8080/ returned
	// 500", "exec /bin/check exited with 1: not ready".
	Output string
	// ReadyKnown says that Ready comes from a probe or a notify socket
	// (else: ready when running); NotifyStatus is the last STATUS= sent
	// on the notify socket.
	ReadyKnown   bool
	NotifyStatus string
}

// prober is the probing of one run of a container (one init): a new run
// starts from HealthStarting.
type prober struct {
	name    string
	pid     int
	start   uint64
	started time.Time // the run's start, for startPeriod
	cancel  context.CancelFunc
	cfg     *desired.Health // guarded by healthManager.mu; changes apply at the next probe
	// applied is the definition the run was created from (its image's
	// HEALTHCHECK; desired.Probe); guarded by healthManager.mu.
	applied *desired.Container
	// server is the run's probe server while it is probed by exec
	// (probeserver.go), serverFailed when it last failed. Used by the
	// run's goroutine only.
	server       *probeServer
	serverFailed time.Time

	// Guarded by healthManager.mu.
	state    actual.HealthState
	failures int
	output   string
}

// probeFunc runs one probe of container p's run with h: ok, and the result
// in words ("returned 500", "timed out after 1s").
type probeFunc func(ctx context.Context, p *prober, h *desired.Health) (ok bool, result string)

// healthManager runs the probes of spec.health (one goroutine per
// container with a probe that runs) and says each container's health and
// readiness when the daemon observes it. It acts through the loop only:
// a change of health has the container and those that wait for it planned
// again (changed); the planner decides what follows (restarted:
// unhealthy, a dependent created).
type healthManager struct {
	log     *slog.Logger
	events  *eventLog
	probe   probeFunc         // exec probes
	net     *netProber        // http and tcp probes
	changed func(name string) // plan name again; kick the status
	now     func() time.Time
	// readyDir keeps the notify sockets' READY=1 across daemon restarts
	// (Layout.Notify; "" keeps nothing).
	readyDir string

	mu        sync.Mutex
	ctx       context.Context
	want      map[string]*desired.Container
	probes    map[string]*prober
	notifiers map[string]*notifySocket // spec.notify (sdnotify.go)
	wg        sync.WaitGroup
}

// newHealthManager returns the manager of the probes run with probe (exec)
// and net (http and tcp), keeping READY=1 in readyDir ("" keeps nothing);
// changed is told of each change of a container's health.
func newHealthManager(ctx context.Context, log *slog.Logger, events *eventLog, probe probeFunc, net *netProber, readyDir string, changed func(string)) *healthManager {
	return &healthManager{log: log, events: events, probe: probe, net: net, readyDir: readyDir, changed: changed, now: time.Now,
		ctx: ctx, want: map[string]*desired.Container{}, probes: map[string]*prober{}, notifiers: map[string]*notifySocket{}}
}

// SetDesired takes the probes' settings from a new desired set: a changed
// probe applies to the running container at its next probe; a container no
// longer wanted, or without a probe now, is no longer probed.
func (m *healthManager) SetDesired(s desired.Set) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.want = s.Containers
	for name := range m.notifiers {
		if !m.want[name].Notify() {
			m.stopNotifyLocked(name)
		}
	}
	for name, p := range m.probes {
		h := desired.Probe(m.want[name], p.applied)
		if h == nil {
			m.stopLocked(name)
			continue
		}
		p.cfg = h
	}
}

// Close stops every probe and waits for them.
func (m *healthManager) Close() {
	m.mu.Lock()
	for name := range m.probes {
		m.stopLocked(name)
	}
	for name := range m.notifiers {
		m.stopNotifyLocked(name)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *healthManager) stopLocked(name string) {
	if p := m.probes[name]; p != nil {
		p.cancel()
		delete(m.probes, name)
	}
}

// Observed fills in c's health and readiness, and starts, keeps or stops
// its probing: a running container with a probe is probed, from
// HealthStarting for each new run (a new init); anything else is not.
// c is nil when container name is gone.
func (m *healthManager) Observed(name string, c *actual.Container) {
	m.mu.Lock()
	defer m.mu.Unlock()
	def := m.want[name]
	var applied *desired.Container
	if c != nil {
		applied = c.Applied
	}
	h := desired.Probe(def, applied)
	running := c != nil && c.Live() && c.Status == actual.StatusRunning
	if n := m.notifiers[name]; n != nil && (!running || !def.Notify() || n.pid != c.Pid || n.start != c.PidStartTime) {
		m.stopNotifyLocked(name)
	}
	var notified *notifySocket
	if running && def.Notify() && m.ctx.Err() == nil {
		// Adopted (a daemon restart): the socket again, for this run.
		if err := m.listenNotifyLocked(name, c.Pid, c.PidStartTime, def); err != nil {
			m.log.Warn("no notify socket", "container", name, "err", err)
		}
		notified = m.notifiers[name]
	}
	defer func() {
		if c != nil && running && def.Notify() {
			c.Ready = notified != nil && notified.ready
		}
	}()
	p := m.probes[name]
	if p != nil && (!running || h == nil || p.pid != c.Pid || p.start != c.PidStartTime) {
		m.stopLocked(name)
		p = nil
	}
	if c == nil {
		return
	}
	switch {
	case !running:
		c.Health, c.Ready = actual.HealthNone, false
		return
	case h == nil:
		c.Health, c.Ready = actual.HealthNone, true
		return
	}
	if p == nil {
		if m.ctx.Err() != nil {
			return
		}
		ctx, cancel := context.WithCancel(m.ctx)
		started := c.Started
		if started.IsZero() {
			started = m.now()
		}
		p = &prober{name: name, pid: c.Pid, start: c.PidStartTime, started: started, cancel: cancel, cfg: h, state: actual.HealthStarting}
		m.probes[name] = p
		m.wg.Go(func() { m.run(ctx, p) })
	}
	p.cfg, p.applied = h, applied
	c.Health, c.HealthFailures, c.Ready = p.state, p.failures, p.state == actual.HealthHealthy
}

// Gone stops the probing of the containers not in names (a full
// observation).
func (m *healthManager) Gone(names map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.probes {
		if !names[name] {
			m.stopLocked(name)
		}
	}
	for name := range m.notifiers {
		if !names[name] {
			m.stopNotifyLocked(name)
		}
	}
	if m.readyDir != "" {
		entries, _ := os.ReadDir(m.readyDir)
		for _, e := range entries {
			if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !names[n] {
				m.forgetReady(n)
			}
		}
	}
}

// Get returns container name's health for status (HealthNone when it is
// not probed).
func (m *healthManager) Get(name string) Health {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := Health{State: actual.HealthNone}
	if p := m.probes[name]; p != nil {
		h = Health{State: p.state, Ready: p.state == actual.HealthHealthy, ReadyKnown: true, Failures: p.failures, Output: p.output}
	}
	if n := m.notifiers[name]; n != nil {
		h.Ready, h.ReadyKnown, h.NotifyStatus = n.ready, true, n.status
	}
	return h
}

// Unhealthy counts the containers whose probe says unhealthy (systemd's
// STATUS= line).
func (m *healthManager) Unhealthy() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range m.probes {
		if p.state == actual.HealthUnhealthy {
			n++
		}
	}
	return n
}

// run probes p's container at once, then every interval, until ctx ends.
// http and tcp probes are run by the network prober's loop (netprobe.go);
// this goroutine waits meanwhile, and runs exec probes itself.
func (m *healthManager) run(ctx context.Context, p *prober) {
	defer p.closeRun()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		h := p.cfg
		m.mu.Unlock()
		if h.HTTP != nil || h.TCP != nil {
			if !m.net.run(ctx.Done(), &netRun{p: p, load: func() *desired.Health { return m.current(p) }, done: func(h *desired.Health, ok bool, result string) {
				if effects := m.apply(p, h, ok, result); effects != nil {
					go effects() // not on the prober's thread: see netprobe.go
				}
			}}) {
				return
			}
			t.Reset(0) // now probed by exec: due now
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, h.Timeout)
		ok, result := m.probe(pctx, p, h)
		timedOut := pctx.Err() == context.DeadlineExceeded
		cancel()
		if ctx.Err() != nil {
			return
		}
		if !ok && timedOut && result == "" {
			result = "timed out after " + h.Timeout.String()
		}
		m.record(p, h, ok, result)
		t.Reset(h.Interval)
	}
}

// current is the probe of p's run now; nil once the run is no longer
// probed.
func (m *healthManager) current(p *prober) *desired.Health {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.probes[p.name] != p {
		return nil
	}
	return p.cfg
}

// record applies one probe's result (apply) and its effects.
func (m *healthManager) record(p *prober, h *desired.Health, ok bool, result string) {
	if effects := m.apply(p, h, ok, result); effects != nil {
		effects()
	}
}

// apply applies one probe's result: a success makes the container
// healthy; retries failures in a row make it unhealthy, but failures
// inside startPeriod of a container not yet healthy do not count. It
// returns what follows from a change (an event, a log line, the loop and
// the status told), or nil when nothing changed but the last output.
func (m *healthManager) apply(p *prober, h *desired.Health, ok bool, result string) (effects func()) {
	what := h.Describe() + " " + result
	if len(what) > maxProbeOutput {
		what = what[:maxProbeOutput] + "…"
	}
	m.mu.Lock()
	if m.probes[p.name] != p {
		m.mu.Unlock()
		return nil // stopped meanwhile
	}
	before, beforeFailures := p.state, p.failures
	p.output = what
	var ev *Event
	switch {
	case ok:
		p.failures = 0
		p.state = actual.HealthHealthy
		if before != actual.HealthHealthy {
			ev = &Event{Action: "healthy", Reason: "healthy: " + what}
		}
	case p.state == actual.HealthStarting && m.now().Sub(p.started) < h.StartPeriod:
		// Inside the start period: not counted.
	default:
		p.failures++
		if p.failures >= h.Retries && p.state != actual.HealthUnhealthy {
			p.state = actual.HealthUnhealthy
			ev = &Event{Action: "unhealthy", Reason: fmt.Sprintf("unhealthy: %s (%d in a row)", what, p.failures)}
		}
	}
	changed := p.state != before
	kick := changed || p.failures != beforeFailures
	var dependents []string
	if changed {
		dependents = m.dependentsLocked(p.name)
	}
	failures := p.failures
	m.mu.Unlock()
	if ev == nil && !kick {
		return nil
	}
	return func() {
		if ev != nil {
			ev.Time = m.now()
			m.events.add(p.name, *ev)
			m.log.Info(ev.Action, "container", p.name, "probe", what, "failures", failures)
		}
		if kick {
			m.changed(p.name)
			for _, n := range dependents {
				m.changed(n)
			}
		}
	}
}
