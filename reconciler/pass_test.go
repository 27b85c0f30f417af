package reconciler

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

func TestChangedNames(t *testing.T) {
	web, db, cache := withSpec(def("web"))[0], withSpec(def("db"))[0], withSpec(def("cache"))[0]
	base := want(web, db)
	for _, tc := range []struct {
		name string
		next desired.Set
		want []string
	}{
		{"same definitions", want(web, db), nil},
		{"one added", want(web, db, cache), []string{"cache"}},
		{"one removed", want(web), []string{"db"}},
		{"one defined anew", want(web, withSpec(def("db", hash("h2", "b1")))[0]), []string{"db"}},
		{"a file turned invalid keeps its definitions", invalid(want(web, db), "/m/db.yaml", "bad", "db"), []string{"db"}},
		{"a file's errors changed", invalid(want(web, db), "/m/web.yaml", "other", "web"), []string{"web"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev := base
			if tc.name == "a file's errors changed" {
				prev = invalid(want(web, db), "/m/web.yaml", "bad", "web")
			}
			got := slices.Sorted(maps.Keys(changedNames(prev, tc.next)))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("changedNames = %q, want %q", got, tc.want)
			}
		})
	}
}

// phaseOf is container name's phase in l's status ("" when it has none).
func phaseOf(l *Loop, name string) Phase {
	for _, s := range l.Status() {
		if s.Name == name {
			return s.Phase
		}
	}
	return ""
}

// countingObserver counts full observations and the names observed alone.
type countingObserver struct {
	*fakeExecutor
	mu   sync.Mutex
	full int
	one  map[string]int
}

func (o *countingObserver) Observe(ctx context.Context) (actual.Set, error) {
	o.mu.Lock()
	o.full++
	o.mu.Unlock()
	return o.fakeExecutor.Observe(ctx)
}

func (o *countingObserver) ObserveOne(ctx context.Context, name string) (*actual.Container, error) {
	o.mu.Lock()
	o.one[name]++
	o.mu.Unlock()
	return o.fakeExecutor.ObserveOne(ctx, name)
}

func (o *countingObserver) counts() (int, map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.full, maps.Clone(o.one)
}

// A new desired set is planned for the containers it changes only: a
// manifest dropped beside many others observes and plans that one; Rescan
// looks at every container again.
func TestSetDesiredLooksAtChangedOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		o := &countingObserver{fakeExecutor: f, one: map[string]int{}}
		l := runLoop(t, Config{Executor: f, Observer: o, Recorder: f, Workers: 2, Resync: time.Hour})
		phase := func(name string) Phase { return phaseOf(l, name) }
		web, db := withSpec(def("web"))[0], withSpec(def("db"))[0]
		l.SetDesired(want(web, db))
		// Running in the status: the look after their actions is done.
		eventually(t, "web and db run", func() bool { return phase("web") == PhaseRunning && phase("db") == PhaseRunning })
		full0, one0 := o.counts()

		l.SetDesired(want(web, db, withSpec(def("cache"))[0]))
		eventually(t, "cache runs", func() bool { return f.running("cache") && phase("cache") == PhaseRunning })
		full1, one1 := o.counts()
		if full1 != full0 {
			t.Errorf("a set that adds one container made %d full observations, want none", full1-full0)
		}
		for _, n := range []string{"web", "db"} {
			if one1[n] != one0[n] {
				t.Errorf("a set that adds cache observed %s %d more times, want 0", n, one1[n]-one0[n])
			}
		}

		l.Rescan()
		eventually(t, "a full pass after Rescan", func() bool { full, _ := o.counts(); return full > full1 })
	})
}

// gatedObserver holds a full observation at its gate while armed.
type gatedObserver struct {
	*fakeExecutor
	armed   atomic.Bool
	gate    chan struct{}
	blocked chan struct{} // closed once a full observation waits
	once    sync.Once
}

func (o *gatedObserver) Observe(ctx context.Context) (actual.Set, error) {
	if o.armed.Load() {
		o.once.Do(func() { close(o.blocked) })
		<-o.gate
	}
	return o.fakeExecutor.Observe(ctx)
}

// A pass over every container observes and plans beside the loop: a new
// desired set that comes meanwhile is acted on without waiting for it
// (with a thousand containers a pass costs tens of milliseconds), and the
// pass, once done, leaves that container's status as the newer plan left
// it.
func TestSetDesiredDuringPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		o := &gatedObserver{fakeExecutor: f, gate: make(chan struct{}), blocked: make(chan struct{})}
		l := runLoop(t, Config{Executor: f, Observer: o, Recorder: f, Workers: 2, Resync: time.Hour})
		phase := func(name string) Phase { return phaseOf(l, name) }
		web := withSpec(def("web"))[0]
		l.SetDesired(want(web))
		eventually(t, "web runs", func() bool { return phase("web") == PhaseRunning })

		o.armed.Store(true)
		l.Rescan()
		<-o.blocked // the pass waits in its observation
		l.SetDesired(want(web, withSpec(def("cache"))[0]))
		eventually(t, "cache runs while the pass waits", func() bool { return f.running("cache") && phase("cache") == PhaseRunning })

		o.armed.Store(false)
		close(o.gate)
		synctest.Wait() // the pass is applied
		if phase("cache") != PhaseRunning || phase("web") != PhaseRunning {
			t.Errorf("after the pass: web %q, cache %q; want both running", phase("web"), phase("cache"))
		}
		if calls := f.callsFor("cache"); len(calls) != 2 || calls[0] != "create cache" {
			t.Errorf("cache's calls: %q, want one create and one start", calls)
		}
	})
}
