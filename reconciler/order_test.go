package reconciler

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// after gives a wanted container spec.after and, with probe, spec.health.
func after(deps ...desired.Dependency) func(*desired.Container) {
	return func(c *desired.Container) {
		if c.Manifest == nil {
			c.Manifest = &desired.Manifest{}
		}
		c.Manifest.Spec.After = deps
	}
}

func probed(on desired.OnUnhealthy) func(*desired.Container) {
	return func(c *desired.Container) {
		if c.Manifest == nil {
			c.Manifest = &desired.Manifest{}
		}
		c.Manifest.Spec.Health = &desired.Health{TCP: &desired.TCPProbe{Port: 5432}, Interval: time.Second, Timeout: time.Second, Retries: 3, OnUnhealthy: on}
	}
}

func dep(name string, cond desired.Condition) desired.Dependency {
	return desired.Dependency{Name: name, Condition: cond}
}

func health(h actual.HealthState, ready bool) func(*actual.Container) {
	return func(c *actual.Container) { c.Health, c.Ready = h, ready }
}

func created() func(*actual.Container) {
	return func(c *actual.Container) { c.Status, c.Started = actual.StatusCreated, time.Time{} }
}

func TestPlanOrder(t *testing.T) {
	db := def("db", probed(desired.OnUnhealthyRestart))
	api := def("api", after(dep("db", desired.ConditionHealthy)))
	web := def("web", after(dep("api", desired.ConditionStarted)))
	job := def("job", policy(desired.RestartOnFailure))
	app := def("app", after(dep("job", desired.ConditionCompleted), dep("db", desired.ConditionReady)))
	manual := def("db", probed(desired.OnUnhealthyNone))
	// An image's container without spec.health: its image's HEALTHCHECK
	// (recorded in the run's Applied) is its probe, or it has none.
	imgDB := def("db", func(c *desired.Container) {
		c.Image, c.ImageDigest, c.Manifest = "registry.example/db:1", "sha256:d1", &desired.Manifest{Spec: desired.ManifestSpec{Image: "registry.example/db:1"}}
	})
	checked := *imgDB
	checked.ImageHealth = &desired.Health{Exec: []string{"/check"}, Interval: time.Second, Timeout: time.Second, Retries: 3, OnUnhealthy: desired.OnUnhealthyRestart}
	imgRun := func(c *actual.Container) { c.Applied = &checked }

	tests := []struct {
		name string
		want desired.Set
		have actual.Set
		out  string
	}{
		{
			name: "chain from nothing: only the first is created",
			want: want(db, api, web),
			out: `api pending "waiting for db: not healthy yet"
  wait +1s: waiting for db: not healthy yet
db pending "created: new manifest db.yaml"
  create: created: new manifest db.yaml
  start: created: new manifest db.yaml
web pending "waiting for api: not started yet"
  wait +1s: waiting for api: not started yet
wake +1s
`,
		},
		{
			name: "db starting: api still waits",
			want: want(db, api, web),
			have: have(running(db, health(actual.HealthStarting, false))),
			out: `api pending "waiting for db: not healthy yet"
  wait +1s: waiting for db: not healthy yet
db running ""
web pending "waiting for api: not started yet"
  wait +1s: waiting for api: not started yet
wake +1s
`,
		},
		{
			name: "db healthy: api is created, web waits for api's start",
			want: want(db, api, web),
			have: have(running(db, health(actual.HealthHealthy, true))),
			out: `api pending "created: new manifest api.yaml"
  create: created: new manifest api.yaml
  start: created: new manifest api.yaml
db running ""
web pending "waiting for api: not started yet"
  wait +1s: waiting for api: not started yet
wake +1s
`,
		},
		{
			name: "created but not started does not count as started",
			want: want(db, api, web),
			have: have(running(db, health(actual.HealthHealthy, true)), running(api, created())),
			out: `api creating "started: created but never started"
  start: started: created but never started
db running ""
web pending "waiting for api: not started yet"
  wait +1s: waiting for api: not started yet
wake +1s
`,
		},
		{
			name: "db unhealthy later: dependents go on, status shows it; db restarted",
			want: want(db, api, web),
			have: have(running(db, health(actual.HealthUnhealthy, false), withRestarts(2)), running(api), running(web)),
			out: `api running "db: not healthy now"
db running "restarted: unhealthy" restarts=2
  stop SIGTERM 10s: restarted: unhealthy
  delete: restarted: unhealthy
  create restarts=3 failures=1: restarted: unhealthy
  start: restarted: unhealthy
web running ""
`,
		},
		{
			name: "image's HEALTHCHECK unhealthy: restarted",
			want: want(imgDB, api),
			have: have(running(imgDB, imgRun, health(actual.HealthUnhealthy, false))),
			out: `api pending "waiting for db: not healthy yet"
  wait +1s: waiting for db: not healthy yet
db running "restarted: unhealthy"
  stop SIGTERM 10s: restarted: unhealthy
  delete: restarted: unhealthy
  create restarts=1 failures=1: restarted: unhealthy
  start: restarted: unhealthy
wake +1s
`,
		},
		{
			name: "image without HEALTHCHECK: the wait says why",
			want: want(imgDB, api),
			have: have(running(imgDB)),
			out: `api pending "waiting for db: not healthy yet: it has no health check (its image has no HEALTHCHECK); give it spec.health"
  wait +1s: waiting for db: not healthy yet: it has no health check (its image has no HEALTHCHECK); give it spec.health
db running ""
wake +1s
`,
		},
		{
			name: "onUnhealthy none: only reported",
			want: want(manual),
			have: have(running(manual, health(actual.HealthUnhealthy, false))),
			out: `db running ""
`,
		},
		{
			name: "unhealthy again soon after a restart: backoff first",
			want: want(db),
			have: have(running(db, health(actual.HealthUnhealthy, false), withFailures(2), func(c *actual.Container) { c.Started = ago(time.Second) })),
			out: `db running "backoff: unhealthy, restarted in 3s" next=+3s
  wait +3s: backoff: unhealthy, restarted in 3s
wake +3s
`,
		},
		{
			name: "unhealthy soon after a start counts as a short run",
			want: want(db),
			have: have(running(db, health(actual.HealthUnhealthy, false), withFailures(2), func(c *actual.Container) { c.Started = ago(time.Minute) })),
			out: `db running "restarted: unhealthy"
  stop SIGTERM 10s: restarted: unhealthy
  delete: restarted: unhealthy
  create restarts=1 failures=3: restarted: unhealthy
  start: restarted: unhealthy
`,
		},
		{
			name: "completed and ready, and a name not defined",
			want: want(job, db, app, def("x", after(dep("nope", desired.ConditionStarted)))),
			have: have(running(job, exited(1, time.Second, time.Minute)), running(db, health(actual.HealthHealthy, false))),
			out: `app pending "waiting for job: not completed yet; waiting for db: not ready yet"
  wait +1s: waiting for job: not completed yet; waiting for db: not ready yet
db running ""
job exited "restarted: exited with 1, policy on-failure"
  delete: restarted: exited with 1, policy on-failure
  create restarts=1 failures=1: restarted: exited with 1, policy on-failure
  start: restarted: exited with 1, policy on-failure
x pending "waiting for nope: not defined"
  wait +1s: waiting for nope: not defined
wake +1s
`,
		},
		{
			name: "completed job and ready db: app is created",
			want: want(job, db, app),
			have: have(running(job, exited(0, time.Second, time.Minute)), running(db, health(actual.HealthHealthy, true))),
			out: `app pending "created: new manifest app.yaml"
  create: created: new manifest app.yaml
  start: created: new manifest app.yaml
db running ""
job exited "not restarted: exited with 0, policy on-failure"
`,
		},
		{
			name: "removal in reverse order: web, then api, then db",
			have: have(running(db), running(api), running(web)),
			out: `api running "deleted: waiting for web to be removed first"
  wait +1s: deleted: waiting for web to be removed first
db running "deleted: waiting for api to be removed first"
  wait +1s: deleted: waiting for api to be removed first
web running "deleted: manifest removed"
  stop SIGTERM 10s: deleted: manifest removed
  delete forget: deleted: manifest removed
wake +1s
`,
		},
		{
			name: "removal of a dependency alone does not wait for kept dependents",
			want: want(api),
			have: have(running(db), running(api)),
			out: `api running "db: not healthy now"
db running "deleted: manifest removed"
  stop SIGTERM 10s: deleted: manifest removed
  delete forget: deleted: manifest removed
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.want
			if w.Containers == nil {
				w = want()
			}
			got := render(Plan(w, tt.have, now))
			if got != tt.out {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tt.out)
			}
		})
	}
}

// TestPlanOrderDeterministic: the same inputs give the same plan (the
// dependents of a removed container are sorted).
func TestPlanOrderDeterministic(t *testing.T) {
	db := def("db")
	var hs []*actual.Container
	hs = append(hs, running(db))
	for _, n := range []string{"e", "b", "d", "a", "c"} {
		hs = append(hs, running(def(n, after(dep("db", desired.ConditionStarted))), exited(0, time.Second, time.Second)))
	}
	first := render(Plan(want(), have(hs...), now))
	if !strings.Contains(first, `db running "deleted: waiting for a, b, c, d, e to be removed first"`) {
		t.Errorf("plan:\n%s", first)
	}
}

// TestLoopStartOrder: the loop, planning one container at a time from its
// own observation and its dependencies', starts a chain in order and
// removes it in reverse order.
func TestLoopStartOrder(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(map[bool]string{false: "observing one", true: "observing all"}[all], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeExecutor()
				var o Observer = f
				if all {
					o = observeAll{f}
				}
				l := runLoop(t, Config{Executor: f, Observer: o, Recorder: f, Workers: 4})
				l.SetDesired(want(withSpec(
					def("web", after(dep("api", desired.ConditionStarted))),
					def("api", after(dep("db", desired.ConditionStarted))),
					def("db"))...))
				eventually(t, "all run", func() bool { return f.running("web") && f.running("api") && f.running("db") })
				order := func(kind string) []string {
					f.mu.Lock()
					defer f.mu.Unlock()
					var out []string
					for _, c := range f.calls {
						if strings.HasPrefix(c, kind+" ") {
							out = append(out, strings.Fields(c)[1])
						}
					}
					return out
				}
				if got := strings.Join(order("create"), " "); got != "db api web" {
					t.Errorf("create order: %s", got)
				}
				l.SetDesired(want())
				eventually(t, "all removed", func() bool { return !f.exists("web") && !f.exists("api") && !f.exists("db") })
				if got := strings.Join(order("delete"), " "); got != "web api db" {
					t.Errorf("delete order: %s", got)
				}
			})
		})
	}
}

// A container being removed waits for the removed containers that wait
// for it, which its plan looks for among all the containers. Where no
// container wanted since the loop started, nor any applied when it looked
// at them all, has a start order, there are none: the removal observes no
// other container (with a thousand, each removal read every container's
// state). Once one has, removals look again, and keep the order.
func TestRemovalObservesOthersOnlyWithStartOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		o := &countingObserver{fakeExecutor: f, one: map[string]int{}}
		full := func() int { n, _ := o.counts(); return n }
		l := runLoop(t, Config{Executor: f, Observer: o, Recorder: f, Workers: 2, Resync: time.Hour})
		l.SetDesired(want(withSpec(def("a"), def("b"), def("c"))...))
		eventually(t, "all run", func() bool { return f.running("a") && f.running("b") && f.running("c") })
		synctest.Wait()
		before := full()
		l.SetDesired(want(withSpec(def("a"))...))
		eventually(t, "b and c removed", func() bool { return !f.exists("b") && !f.exists("c") })
		synctest.Wait()
		if n := full() - before; n != 0 {
			t.Errorf("removing b and c, no container having a start order: %d observations of every container, want none", n)
		}

		l.SetDesired(want(withSpec(def("a"), def("web", after(dep("db", desired.ConditionStarted))), def("db"))...))
		eventually(t, "web and db run", func() bool { return f.running("web") && f.running("db") })
		synctest.Wait()
		before = full()
		l.SetDesired(want(withSpec(def("a"))...))
		eventually(t, "web and db removed", func() bool { return !f.exists("web") && !f.exists("db") })
		if full() == before {
			t.Error("removing db, which web waits for: no observation of every container")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		var deletes []string
		for _, c := range f.calls {
			if n, ok := strings.CutPrefix(c, "delete "); ok && (n == "web" || n == "db") {
				deletes = append(deletes, n)
			}
		}
		if got := strings.Join(deletes, " "); got != "web db" {
			t.Errorf("delete order: %s, want web db", got)
		}
	})
}

// After a restart the start order of the containers to remove is what was
// applied: a loop that was never handed a container with spec.after still
// removes, in order, containers applied with one (its first pass looked at
// them all).
func TestRemovalOrderAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		ctx, cancel := context.WithCancel(context.Background())
		first := New(Config{Executor: f, Observer: f, Recorder: f, Workers: 2, Resync: time.Hour, RateLimiter: NewExponentialRateLimiter(time.Millisecond, 20*time.Millisecond)})
		done := make(chan struct{})
		go func() { defer close(done); first.Run(ctx) }()
		first.SetDesired(want(withSpec(def("web", after(dep("db", desired.ConditionStarted))), def("db"))...))
		eventually(t, "web and db run", func() bool { return f.running("web") && f.running("db") })
		cancel()
		<-done

		// web's stop outlasts db's recheck: db, planned alone then, must
		// still wait.
		f.mu.Lock()
		f.hook = func(op, id string) error {
			if id == "web" && op == "kill" {
				time.Sleep(3 * DependencyRecheck)
			}
			return nil
		}
		f.mu.Unlock()
		o := &countingObserver{fakeExecutor: f, one: map[string]int{}}
		l := runLoop(t, Config{Executor: f, Observer: o, Recorder: f, Workers: 2, Resync: time.Hour})
		l.SetDesired(want())
		eventually(t, "web and db removed", func() bool { return !f.exists("web") && !f.exists("db") })
		f.mu.Lock()
		defer f.mu.Unlock()
		var deletes []string
		for _, c := range f.calls {
			if n, ok := strings.CutPrefix(c, "delete "); ok {
				deletes = append(deletes, n)
			}
		}
		if got := strings.Join(deletes, " "); got != "web db" {
			t.Errorf("delete order after a restart: %s, want web db", got)
		}
	})
}
