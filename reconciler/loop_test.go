package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// fakeExecutor is an in-memory executor, observer and recorder, for the
// loop's ordering, parallelism and retry semantics only: it runs nothing.
type fakeExecutor struct {
	mu      sync.Mutex
	cs      map[string]*fakeContainer
	records map[string]actual.Record
	calls   []string // "create web", "kill web SIGTERM", ...
	// hook, when set, runs (unlocked) at the start of every executor call
	// and may block it or make it fail.
	hook func(op, id string) error

	inflight, maxInflight map[string]int // per container
	total, maxTotal       int            // all containers
}

type fakeContainer struct {
	status     actual.Status
	alive      bool
	paused     bool
	exited     chan struct{}
	exitCode   int
	ignoreTerm bool // SIGTERM does nothing
	started    time.Time
	finished   time.Time
}

func newFakeExecutor() *fakeExecutor {
	return &fakeExecutor{
		cs: map[string]*fakeContainer{}, records: map[string]actual.Record{},
		inflight: map[string]int{}, maxInflight: map[string]int{},
	}
}

// enter records a call and runs the hook; the returned func ends the call.
func (f *fakeExecutor) enter(op, id string, extra ...string) (func(), error) {
	f.mu.Lock()
	f.calls = append(f.calls, strings.Join(append([]string{op, id}, extra...), " "))
	f.inflight[id]++
	f.maxInflight[id] = max(f.maxInflight[id], f.inflight[id])
	f.total++
	f.maxTotal = max(f.maxTotal, f.total)
	hook := f.hook
	f.mu.Unlock()
	leave := func() {
		f.mu.Lock()
		f.inflight[id]--
		f.total--
		f.mu.Unlock()
	}
	if hook != nil {
		if err := hook(op, id); err != nil {
			leave()
			return nil, err
		}
	}
	return leave, nil
}

func (f *fakeExecutor) Create(ctx context.Context, id string, spec *specs.Spec) error {
	leave, err := f.enter("create", id)
	if err != nil {
		return err
	}
	defer leave()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cs[id] != nil {
		return fmt.Errorf("container %s exists", id)
	}
	f.cs[id] = &fakeContainer{status: actual.StatusCreated, alive: true, exited: make(chan struct{})}
	return nil
}

func (f *fakeExecutor) Start(ctx context.Context, id string) error {
	leave, err := f.enter("start", id)
	if err != nil {
		return err
	}
	defer leave()
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cs[id]
	if c == nil || c.status != actual.StatusCreated {
		return fmt.Errorf("container %s is not created", id)
	}
	c.status, c.started = actual.StatusRunning, time.Now()
	return nil
}

func (f *fakeExecutor) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	extra := []string{unix.SignalName(sig)}
	if all {
		extra = append(extra, "all")
	}
	leave, err := f.enter("kill", id, extra...)
	if err != nil {
		return err
	}
	defer leave()
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cs[id]
	if c == nil || !c.alive {
		return fmt.Errorf("container %s is not running", id)
	}
	if sig == unix.SIGTERM && c.ignoreTerm && !all {
		return nil
	}
	c.exitLocked(128 + int(sig))
	return nil
}

func (c *fakeContainer) exitLocked(code int) {
	c.alive, c.status, c.exitCode, c.finished = false, actual.StatusStopped, code, time.Now()
	close(c.exited)
}

func (f *fakeExecutor) Wait(ctx context.Context, id string) error {
	leave, err := f.enter("wait", id)
	if err != nil {
		return err
	}
	defer leave()
	f.mu.Lock()
	c := f.cs[id]
	f.mu.Unlock()
	if c == nil {
		return nil
	}
	select {
	case <-c.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeExecutor) Delete(ctx context.Context, id string) error {
	leave, err := f.enter("delete", id)
	if err != nil {
		return err
	}
	defer leave()
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.cs[id]; c != nil && c.alive {
		return fmt.Errorf("container %s is running", id)
	}
	delete(f.cs, id)
	return nil
}

func (f *fakeExecutor) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	leave, err := f.enter("update", id)
	if err != nil {
		return err
	}
	defer leave()
	return nil
}

func (f *fakeExecutor) Observe(ctx context.Context) (actual.Set, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := actual.Set{}
	for id, c := range f.cs {
		a := &actual.Container{
			Name: id, Status: c.status, InitAlive: c.alive, CgroupHasProcs: c.alive, Paused: c.paused,
			Exited: !c.alive, ExitCode: c.exitCode, Started: c.started, Finished: c.finished,
			Record: f.records[id],
		}
		if a.Applied != nil {
			a.SpecHash, a.BaseHash = a.Applied.Hash, a.Applied.BaseHash
		}
		s[id] = a
	}
	return s, nil
}

func (f *fakeExecutor) ObserveOne(ctx context.Context, name string) (*actual.Container, error) {
	set, err := f.Observe(ctx)
	return set[name], err
}

// observeAll hides an observer's ObserveOne: the loop then plans from
// every container's observation.
type observeAll struct{ Observer }

func (f *fakeExecutor) Record(ctx context.Context, name string, r actual.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records[name] = r
	return nil
}

func (f *fakeExecutor) Forget(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.records, name)
	return nil
}

// callsFor returns the calls made for container id.
func (f *fakeExecutor) callsFor(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.Fields(c)[1] == id {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeExecutor) running(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cs[id]
	return c != nil && c.alive && c.status == actual.StatusRunning
}

func (f *fakeExecutor) exists(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs[id] != nil
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// startLoop runs a loop over f until the test ends.
func startLoop(t *testing.T, f *fakeExecutor, workers int) *Loop {
	t.Helper()
	return runLoop(t, Config{Executor: f, Observer: f, Recorder: f, Workers: workers})
}

// runLoop runs a loop with cfg until the test ends (short resync and
// retry delays unless set).
func runLoop(t *testing.T, cfg Config) *Loop {
	t.Helper()
	if cfg.Resync == 0 {
		cfg.Resync = 50 * time.Millisecond
	}
	if cfg.RateLimiter == nil {
		cfg.RateLimiter = NewExponentialRateLimiter(time.Millisecond, 20*time.Millisecond)
	}
	l := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

// spec gives test definitions a spec, as the loader would.
func withSpec(cs ...*desired.Container) []*desired.Container {
	for _, c := range cs {
		c.Spec = &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{}}}
	}
	return cs
}

func TestLoopOrdering(t *testing.T) {
	t.Run("observing one", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakeExecutor()
			testLoopOrdering(t, f, runLoop(t, Config{Executor: f, Observer: f, Recorder: f, Workers: 4}))
		})
	})
	t.Run("observing all", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFakeExecutor()
			testLoopOrdering(t, f, runLoop(t, Config{Executor: f, Observer: observeAll{f}, Recorder: f, Workers: 4}))
		})
	})
}

func testLoopOrdering(t *testing.T, f *fakeExecutor, l *Loop) {
	l.SetDesired(want(withSpec(def("web"), def("db"))...))
	eventually(t, "web and db run", func() bool { return f.running("web") && f.running("db") })
	if got, want := f.callsFor("web"), []string{"create web", "start web"}; !slices.Equal(got, want) {
		t.Fatalf("calls for web = %q, want %q", got, want)
	}

	// Spec changed: stop, delete, create, start, in that order.
	l.SetDesired(want(withSpec(def("web", hash("h2", "b2")), def("db"))...))
	eventually(t, "web recreated", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.records["web"].Applied.Hash == "h2" && f.cs["web"] != nil && f.cs["web"].status == actual.StatusRunning
	})
	want2 := []string{"create web", "start web", "kill web SIGTERM", "wait web", "delete web", "create web", "start web"}
	if got := f.callsFor("web"); !slices.Equal(got, want2) {
		t.Fatalf("calls for web = %q, want %q", got, want2)
	}

	// Resources only: update in place, recorded.
	l.SetDesired(want(withSpec(def("web", hash("h3", "b2")), def("db"))...))
	eventually(t, "web updated", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.records["web"].Applied.Hash == "h3"
	})
	if got := f.callsFor("web"); got[len(got)-1] != "update web" {
		t.Fatalf("calls for web = %q, want an update last", got)
	}

	// Removed: stopped, deleted, record forgotten.
	l.SetDesired(want(withSpec(def("web", hash("h3", "b2")))...))
	eventually(t, "db deleted", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		_, rec := f.records["db"]
		return f.cs["db"] == nil && !rec
	})
	if got, want := f.callsFor("db"), []string{"create db", "start db", "kill db SIGTERM", "wait db", "delete db"}; !slices.Equal(got, want) {
		t.Fatalf("calls for db = %q, want %q", got, want)
	}
	eventually(t, "statuses settle", func() bool {
		st := l.Status()
		return len(st) == 1 && st[0].Name == "web" && st[0].Phase == PhaseRunning
	})
}

func TestLoopStopTimeoutKills(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		l := startLoop(t, f, 4)
		web := withSpec(def("web", func(c *desired.Container) { c.StopTimeout = 20 * time.Millisecond }))
		l.SetDesired(want(web...))
		eventually(t, "web runs", func() bool { return f.running("web") })
		f.mu.Lock()
		f.cs["web"].ignoreTerm = true
		f.mu.Unlock()
		l.SetDesired(want())
		eventually(t, "web deleted", func() bool { return !f.exists("web") })
		want := []string{"create web", "start web", "kill web SIGTERM", "wait web", "kill web SIGKILL all", "wait web", "delete web"}
		if got := f.callsFor("web"); !slices.Equal(got, want) {
			t.Fatalf("calls = %q, want %q", got, want)
		}
	})
}

func TestLoopParallelismBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		gate := make(chan struct{})
		f.hook = func(op, id string) error {
			if op == "create" {
				<-gate
			}
			return nil
		}
		l := startLoop(t, f, 3)
		var cs []*desired.Container
		for i := range 10 {
			cs = append(cs, def(fmt.Sprintf("c%d", i)))
		}
		l.SetDesired(want(withSpec(cs...)...))
		eventually(t, "3 creates in flight", func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.total == 3
		})
		synctest.Wait() // every worker waits: no fourth create is on its way
		f.mu.Lock()
		total := f.total
		f.mu.Unlock()
		if total != 3 {
			t.Fatalf("%d creates in flight, want 3", total)
		}
		close(gate)
		eventually(t, "all run", func() bool {
			for _, c := range cs {
				if !f.running(c.Name) {
					return false
				}
			}
			return true
		})
		if f.maxTotal != 3 {
			t.Errorf("at most %d containers at once, want 3", f.maxTotal)
		}
	})
}

func TestLoopOneContainerOneSequenceAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		gate := make(chan struct{})
		f.hook = func(op, id string) error {
			if op == "create" {
				<-gate
			}
			return nil
		}
		l := startLoop(t, f, 4)
		web := want(withSpec(def("web"))...)
		l.SetDesired(web)
		eventually(t, "create in flight", func() bool { return len(f.callsFor("web")) == 1 })
		for range 20 {
			l.Notify("web")
			l.SetDesired(web)
		}
		time.Sleep(20 * time.Millisecond)
		close(gate)
		eventually(t, "web runs", func() bool { return f.running("web") })
		time.Sleep(100 * time.Millisecond) // several resyncs
		if got, want := f.callsFor("web"), []string{"create web", "start web"}; !slices.Equal(got, want) {
			t.Errorf("calls = %q, want %q", got, want)
		}
		if f.maxInflight["web"] != 1 {
			t.Errorf("web had %d calls at once, want 1", f.maxInflight["web"])
		}
	})
}

func TestLoopRetriesWithoutBlockingOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		var mu sync.Mutex
		fails := 3
		f.hook = func(op, id string) error {
			mu.Lock()
			defer mu.Unlock()
			if op == "create" && id == "bad" && fails > 0 {
				fails--
				return errors.New("disk full")
			}
			return nil
		}
		l := startLoop(t, f, 1) // one worker: a failing container must not hold it
		l.SetDesired(want(withSpec(def("bad"), def("good1"), def("good2"))...))
		eventually(t, "all run", func() bool { return f.running("bad") && f.running("good1") && f.running("good2") })
		if got := f.callsFor("bad"); len(got) != 5 || got[3] != "create bad" || got[4] != "start bad" {
			t.Errorf("calls for bad = %q, want 4 creates then a start", got)
		}
	})
}

func TestLoopTerminalErrorNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		l := startLoop(t, f, 1)
		l.SetDesired(want(withSpec(def("web", func(c *desired.Container) { c.StopSignal = "SIGNOPE" }))...))
		eventually(t, "web runs", func() bool { return f.running("web") })
		l.SetDesired(want())
		eventually(t, "the failure shows", func() bool {
			st := l.Status()
			return len(st) == 1 && strings.Contains(st[0].Reason, `unknown signal "SIGNOPE"`)
		})
		if f.exists("web") != true {
			t.Errorf("web deleted without being stopped")
		}
	})
}

func TestLoopPlansNothingBeforeTheFirstDesiredSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		web := withSpec(def("web"))[0]
		f.cs["web"] = &fakeContainer{status: actual.StatusRunning, alive: true, exited: make(chan struct{}), started: time.Now()}
		f.records["web"] = actual.Record{Applied: web}
		l := startLoop(t, f, 4)
		time.Sleep(100 * time.Millisecond)
		if got := f.callsFor("web"); len(got) != 0 {
			t.Fatalf("calls before any desired set: %q", got)
		}
		l.SetDesired(want(web)) // adopted: nothing to do
		eventually(t, "web shows running", func() bool {
			st := l.Status()
			return len(st) == 1 && st[0].Phase == PhaseRunning
		})
		time.Sleep(100 * time.Millisecond)
		if got := f.callsFor("web"); len(got) != 0 {
			t.Fatalf("calls for an adopted container: %q", got)
		}
	})
}

func TestLoopRestartsAfterBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		l := startLoop(t, f, 4)
		l.SetDesired(want(withSpec(def("web"))...))
		eventually(t, "web runs", func() bool { return f.running("web") })
		f.mu.Lock()
		f.cs["web"].exitLocked(1)
		f.mu.Unlock()
		l.Notify("web")
		eventually(t, "web in backoff", func() bool {
			st := l.Status()
			return len(st) == 1 && st[0].Phase == PhaseBackoff
		})
		eventually(t, "web restarted", func() bool { return f.running("web") })
		f.mu.Lock()
		rec := f.records["web"]
		f.mu.Unlock()
		if rec.Restarts != 1 || rec.Failures != 1 {
			t.Errorf("record = %+v, want restarts 1, failures 1", rec)
		}
	})
}

// fakeCache stands for actual.Store's cache with a long TTL: once held,
// it answers each container's last observation (its record always fresh)
// until the container is invalidated, after which it passes that
// container's observations through.
type fakeCache struct {
	*fakeExecutor
	mu    sync.Mutex
	held  map[string]*actual.Container // nil: passing everything through
	fresh map[string]bool              // invalidated since held
}

// hold makes the cache answer what is observed now from then on.
func (c *fakeCache) hold() {
	set, _ := c.fakeExecutor.Observe(context.Background())
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held, c.fresh = set, map[string]bool{}
}

func (c *fakeCache) Invalidate(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fresh != nil {
		c.fresh[name] = true
	}
}

func (c *fakeCache) ObserveOne(ctx context.Context, name string) (*actual.Container, error) {
	set, err := c.Observe(ctx)
	return set[name], err
}

func (c *fakeCache) Observe(ctx context.Context) (actual.Set, error) {
	set, err := c.fakeExecutor.Observe(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, a := range set {
		if old := c.held[name]; old != nil && !c.fresh[name] {
			cp := *old
			cp.Record, cp.SpecHash, cp.BaseHash = a.Record, a.SpecHash, a.BaseHash
			set[name] = &cp
		}
	}
	return set, nil
}

// A container paused behind the observer's back (its cache still says
// running) whose manifest changes is not recreated: the loop reads it
// afresh before acting, sees it paused and waits; once resumed, the change
// applies.
func TestLoopActsOnFreshObservations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		c := &fakeCache{fakeExecutor: f}
		l := runLoop(t, Config{Executor: f, Observer: c, Recorder: f, Workers: 2})
		l.SetDesired(want(withSpec(def("web"))...))
		eventually(t, "web runs", func() bool { return f.running("web") })
		eventually(t, "web shows running", func() bool {
			st := l.Status()
			return len(st) == 1 && st[0].Phase == PhaseRunning && st[0].Reason == ""
		})
		c.hold()
		f.mu.Lock()
		f.cs["web"].paused = true
		f.mu.Unlock()

		l.SetDesired(want(withSpec(def("web", hash("h2", "b2")))...))
		eventually(t, "web shows its change pending", func() bool {
			st := l.Status()
			return len(st) == 1 && strings.Contains(st[0].Reason, "paused: change pending")
		})
		if got := f.callsFor("web"); !slices.Equal(got, []string{"create web", "start web"}) {
			t.Fatalf("a paused container was acted on: %q", got)
		}

		f.mu.Lock()
		f.cs["web"].paused = false
		f.mu.Unlock()
		eventually(t, "web recreated once resumed", func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.records["web"].Applied.Hash == "h2" && f.cs["web"] != nil && f.cs["web"].status == actual.StatusRunning
		})
	})
}

// OnStatus is called when statuses change, and not by passes that change
// nothing: an idle daemon publishes nothing.
func TestLoopOnStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeExecutor()
		var mu sync.Mutex
		calls := 0
		count := func() int {
			mu.Lock()
			defer mu.Unlock()
			return calls
		}
		l := runLoop(t, Config{Executor: f, Observer: f, Recorder: f, OnStatus: func() {
			mu.Lock()
			calls++
			mu.Unlock()
		}})
		l.SetDesired(want(withSpec(def("web"))...))
		eventually(t, "web shows running", func() bool {
			st := l.Status()
			return len(st) == 1 && st[0].Phase == PhaseRunning && st[0].Reason == "" && f.running("web")
		})
		if count() == 0 {
			t.Fatal("OnStatus not called while web was created")
		}
		// The follow-up check after the start, then idle passes.
		time.Sleep(100 * time.Millisecond)
		idle := count()
		time.Sleep(300 * time.Millisecond) // six resyncs
		if n := count(); n != idle {
			t.Errorf("OnStatus called %d times by passes that changed nothing", n-idle)
		}
		l.SetDesired(want())
		eventually(t, "web gone and reported", func() bool { return len(l.Status()) == 0 && count() > idle })
	})
}

func TestQueueStingy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newQueue(NewExponentialRateLimiter(time.Millisecond, time.Second), nil)
		q.Add("a")
		q.Add("a")
		q.Add("b")
		if n, _ := q.Get(); n != "a" {
			t.Fatalf("Get = %q, want a", n)
		}
		q.Add("a") // while processing: dirty, not handed out
		if n, _ := q.Get(); n != "b" {
			t.Fatalf("Get = %q, want b", n)
		}
		got := make(chan string, 1)
		go func() { n, _ := q.Get(); got <- n }()
		synctest.Wait() // the Get waits
		select {
		case n := <-got:
			t.Fatalf("Get handed out %q while a is processed", n)
		default:
		}
		q.Done("a")
		if n := <-got; n != "a" {
			t.Fatalf("Get = %q after Done, want a", n)
		}
		q.Done("a")
		q.Done("b")

		q.AddAfter("c", time.Hour)
		q.AddAfter("c", time.Millisecond) // earliest wins
		q.AddAfter("c", time.Hour)
		go func() { n, _ := q.Get(); got <- n }()
		start := time.Now()
		if n := <-got; n != "c" {
			t.Fatalf("Get = %q, want c", n)
		}
		if d := time.Since(start); d != time.Millisecond {
			t.Errorf("delayed add came after %v, want 1ms", d)
		}
		q.ShutDown()
		if _, ok := q.Get(); ok {
			t.Fatal("Get after ShutDown")
		}
	})
}

// fakeClock is a Clock that moves only when Advance moves it, firing the
// timers that are due in the caller's goroutine (a fake: the queue's
// delayed adds, driven step by step).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, tm)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !tm.stopped
		tm.stopped = true
		return was
	}
}

// Advance moves the clock by d and runs the timers due by then, earliest
// first.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due, left []*fakeTimer
	for _, tm := range c.timers {
		switch {
		case tm.stopped:
		case tm.at.After(c.now):
			left = append(left, tm)
		default:
			tm.stopped = true
			due = append(due, tm)
		}
	}
	c.timers = left
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	for _, tm := range due {
		tm.f()
	}
}

// ready returns the names the queue would hand out now, in order.
func (q *queue) ready() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.items)
}

// The queue's delayed adds wait on its clock: the earliest of several
// wins, a later one does not add the name again, and an add after
// ShutDown is dropped.
func TestQueueAddAfterClock(t *testing.T) {
	c := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	q := newQueue(NewExponentialRateLimiter(time.Second, time.Minute), c)
	q.AddAfter("c", time.Hour)
	q.AddAfter("c", time.Second) // earliest wins
	q.AddAfter("c", time.Hour)
	q.AddAfter("d", 2*time.Second)
	q.AddAfter("now", 0)
	if got := q.ready(); !slices.Equal(got, []string{"now"}) {
		t.Fatalf("ready at once: %q, want [now]", got)
	}
	c.Advance(999 * time.Millisecond)
	if got := q.ready(); !slices.Equal(got, []string{"now"}) {
		t.Fatalf("ready before 1s: %q", got)
	}
	c.Advance(time.Millisecond)
	if got := q.ready(); !slices.Equal(got, []string{"now", "c"}) {
		t.Fatalf("ready at 1s: %q, want [now c]", got)
	}
	for _, want := range []string{"now", "c"} {
		if n, _ := q.Get(); n != want {
			t.Fatalf("Get = %q, want %q", n, want)
		}
		q.Done(want)
	}
	c.Advance(2 * time.Hour)
	if got := q.ready(); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("ready after 2h: %q, want [d] (c's later adds were dropped)", got)
	}

	// Rate-limited adds wait 1s, 2s, 4s, ... on the same clock.
	q.Get()
	q.Done("d")
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		q.AddRateLimited("r")
		c.Advance(d - time.Millisecond)
		if len(q.ready()) != 0 {
			t.Fatalf("r ready before %v", d)
		}
		c.Advance(time.Millisecond)
		if n, _ := q.Get(); n != "r" {
			t.Fatalf("Get = %q after %v, want r", n, d)
		}
		q.Done("r")
	}

	q.AddAfter("e", time.Second)
	q.ShutDown()
	c.Advance(time.Second)
	if _, ok := q.Get(); ok {
		t.Fatal("Get after ShutDown")
	}
}

func TestExponentialRateLimiter(t *testing.T) {
	l := NewExponentialRateLimiter(time.Second, 5*time.Second)
	var got []time.Duration
	for range 5 {
		got = append(got, l.When("a"))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(got, want) || l.NumRequeues("a") != 5 {
		t.Errorf("delays %v, want %v", got, want)
	}
	l.Forget("a")
	if d := l.When("a"); d != time.Second {
		t.Errorf("after Forget: %s", d)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGTERM": unix.SIGTERM, "term": unix.SIGTERM, "9": unix.SIGKILL, "SIGRTMIN+3": 37, "SIGFOO": 0} {
		got, err := parseSignal(in)
		if want == 0 {
			if !errors.Is(err, ErrTerminal) {
				t.Errorf("parseSignal(%q) = %v, %v; want a terminal error", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
