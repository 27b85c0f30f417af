package daemon

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// The health state machine, fed probe results by hand (the probes
// themselves run against real containers in test/e2e).
func TestHealthStateMachine(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var changed []string
	events := newEventLog()
	m := newHealthManager(context.Background(), slog.New(slog.DiscardHandler), events, nil, nil, "", func(n string) { changed = append(changed, n) })
	m.now = func() time.Time { return now }
	h := &desired.Health{TCP: &desired.TCPProbe{Port: 5432}, Interval: time.Second, Timeout: time.Second, Retries: 3, StartPeriod: 10 * time.Second}
	db := &desired.Container{Name: "db", Manifest: &desired.Manifest{Spec: desired.ManifestSpec{Health: h}}}
	api := &desired.Container{Name: "api", Manifest: &desired.Manifest{Spec: desired.ManifestSpec{After: []desired.Dependency{{Name: "db", Condition: desired.ConditionHealthy}}}}}
	m.want = map[string]*desired.Container{"db": db, "api": api}
	p := &prober{name: "db", pid: 1, started: now, cancel: func() {}, cfg: h, state: actual.HealthStarting}
	m.probes["db"] = p
	get := func() Health { return m.Get("db") }

	// Inside the start period failures do not count.
	for range 5 {
		m.record(p, h, false, "failed: connection refused")
	}
	if g := get(); g.State != actual.HealthStarting || g.Failures != 0 || g.Output != "tcp :5432 failed: connection refused" {
		t.Fatalf("inside startPeriod: %+v", g)
	}
	// A success ends it: healthy, dependents told.
	m.record(p, h, true, "connected")
	if g := get(); g.State != actual.HealthHealthy || !g.Ready {
		t.Fatalf("after a success: %+v", g)
	}
	slices.Sort(changed)
	if !slices.Equal(changed, []string{"api", "db"}) {
		t.Errorf("told %v, want api and db", changed)
	}
	// Failures count now, even inside the start period; retries-1 of
	// them leave it healthy.
	changed = nil
	m.record(p, h, false, "failed: connection refused")
	m.record(p, h, false, "failed: connection refused")
	if g := get(); g.State != actual.HealthHealthy || g.Failures != 2 {
		t.Fatalf("two failures: %+v", g)
	}
	m.record(p, h, false, "failed: connection refused")
	if g := get(); g.State != actual.HealthUnhealthy || g.Ready || g.Failures != 3 {
		t.Fatalf("three failures: %+v", g)
	}
	if m.Unhealthy() != 1 {
		t.Errorf("Unhealthy() = %d", m.Unhealthy())
	}
	evs := events.events("db")
	last := evs[len(evs)-1]
	if last.Action != "unhealthy" || last.Reason != "unhealthy: tcp :5432 failed: connection refused (3 in a row)" {
		t.Errorf("event %+v", last)
	}
	// More failures: no new event.
	m.record(p, h, false, "failed: connection refused")
	if n := len(events.events("db")); n != len(evs) {
		t.Errorf("a further failure added an event")
	}
	// Observed fills in what the planner reads, for this run only: a
	// new init starts from starting.
	c := &actual.Container{Name: "db", Status: actual.StatusRunning, Pid: 1, InitAlive: true}
	m.Observed("db", c)
	if c.Health != actual.HealthUnhealthy || c.Ready || c.HealthFailures != 4 {
		t.Errorf("observed: %+v", c)
	}
	m.ctx = canceled()
	c2 := &actual.Container{Name: "db", Status: actual.StatusRunning, Pid: 2, InitAlive: true}
	m.Observed("db", c2)
	if g := get(); g.State != actual.HealthNone {
		t.Errorf("the old run's probe was kept: %+v", g)
	}
	// Without a probe: none, ready while it runs.
	c3 := &actual.Container{Name: "api", Status: actual.StatusRunning, Pid: 3, InitAlive: true}
	m.Observed("api", c3)
	if c3.Health != actual.HealthNone || !c3.Ready {
		t.Errorf("no probe: %+v", c3)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
