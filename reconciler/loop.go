package reconciler

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
)

// Config is what New needs. Executor, Observer and Recorder are required.
type Config struct {
	Executor Executor
	Observer Observer
	Recorder Recorder
	// Images resolves the images of the containers that run one; nil
	// leaves them unresolved (never created).
	Images  Images
	Planner Planner
	Logger  *slog.Logger // default: discard

	// Workers is how many containers are worked on at once (default 4).
	Workers int
	// Resync is the period of the full pass that catches what no event
	// reported (default 30s).
	Resync time.Duration
	// ActionTimeout bounds one action (default 2m); a stop gets its own
	// timeout on top.
	ActionTimeout time.Duration
	// RateLimiter spaces a container's retries after a failed action, and
	// its re-checks after actions that succeeded (default: 1s doubling to
	// 5m, reset when the container needs nothing).
	RateLimiter RateLimiter
	// Clock is the time the planner is given and the clock of the delayed
	// re-checks (a Wait's time, a retry's delay); default: the real clock.
	// The resync and heartbeat tickers and the action timeouts use the
	// time package's (tests drive them with testing/synctest).
	Clock Clock

	// Heartbeat, when set, is called by Run from the loop's own goroutine
	// after every pass (pass true) and every HeartbeatEvery while it
	// waits (pass false; default Resync). A loop stuck in a pass (an
	// observation that hangs) stops calling it: the daemon pets systemd's
	// watchdog from here. It must not block.
	Heartbeat      func(pass bool)
	HeartbeatEvery time.Duration

	// OnStatus, when set, is called after what Status returns changed (a
	// container's status changed, appeared or went): once per pass that
	// changed it, and after each change a worker makes. It is called
	// without the loop's lock and must not block.
	OnStatus func()
	// OnEvent, when set, is called from the worker for each action it
	// begins, each that fails and each stop that times out (Event). It
	// must not block.
	OnEvent func(Event)
}

// Loop runs plans: it observes, plans and executes, one container's action
// sequence at a time, up to Workers containers at once. A pass over every
// container runs on each new desired set and every Resync; Notify asks for
// one container to be looked at again (an exit, say). Nothing is planned
// before the first desired set arrives, so a daemon that has not read its
// manifests yet never deletes anything.
type Loop struct {
	cfg   Config
	log   *slog.Logger
	queue *queue
	kick  chan struct{} // a pass is wanted

	mu   sync.Mutex
	want *desired.Set // nil until SetDesired
	// changed names the containers the desired sets handed in since the
	// last pass may plan differently (changedNames); full asks for a pass
	// over every container instead (Rescan).
	changed map[string]bool
	full    bool
	status  map[string]Status
	ready   chan struct{} // closed by the first SetDesired
	// afterSeen: a container wanted since the loop started, or applied
	// when a pass looked, has a start order (spec.after). Until then,
	// once a pass has looked at every container (looked), a container
	// being removed has no removed container to wait for, and its plan
	// observes no other (related).
	afterSeen, looked atomic.Bool
}

// New returns a loop; Run runs it.
func New(cfg Config) *Loop {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.ActionTimeout <= 0 {
		cfg.ActionTimeout = 2 * time.Minute
	}
	if cfg.RateLimiter == nil {
		cfg.RateLimiter = NewExponentialRateLimiter(time.Second, 5*time.Minute)
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Heartbeat == nil {
		cfg.Heartbeat = func(bool) {}
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = cfg.Resync
	}
	if cfg.OnStatus == nil {
		cfg.OnStatus = func() {}
	}
	return &Loop{
		cfg:    cfg,
		log:    cfg.Logger,
		queue:  newQueue(cfg.RateLimiter, cfg.Clock),
		kick:   make(chan struct{}, 1),
		status: map[string]Status{},
		ready:  make(chan struct{}),
	}
}

// SetDesired hands the loop a new desired set and asks for a pass over
// the containers it changes (every container for the first set).
func (l *Loop) SetDesired(s desired.Set) {
	if !l.afterSeen.Load() {
		l.noteAfter(s)
	}
	l.mu.Lock()
	first := l.want == nil
	if !first && !l.full {
		if l.changed == nil {
			l.changed = map[string]bool{}
		}
		if names, ok := s.ChangedSince(*l.want); ok {
			for _, n := range names {
				l.changed[n] = true
			}
		} else {
			for n := range changedNames(*l.want, s) {
				l.changed[n] = true
			}
		}
	}
	l.want = &s
	l.mu.Unlock()
	if first {
		close(l.ready)
	}
	l.kickPass()
}

// noteAfter sets afterSeen when a container of s that may be new has a
// start order: the names s says changed since the Set the loop has, or
// all of them.
func (l *Loop) noteAfter(s desired.Set) {
	l.mu.Lock()
	var names []string
	ok := false
	if l.want != nil {
		names, ok = s.ChangedSince(*l.want)
	}
	l.mu.Unlock()
	has := func(c *desired.Container) bool { return c != nil && len(c.After()) > 0 }
	if ok {
		for _, n := range names {
			if has(s.Containers[n]) {
				l.afterSeen.Store(true)
				return
			}
		}
		return
	}
	for _, c := range s.Containers {
		if has(c) {
			l.afterSeen.Store(true)
			return
		}
	}
}

// Rescan asks for a pass over every container (a reload: every manifest
// read and every container looked at again).
func (l *Loop) Rescan() {
	l.mu.Lock()
	l.full, l.changed = true, nil
	l.mu.Unlock()
	l.kickPass()
}

func (l *Loop) kickPass() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Notify asks for container name to be looked at again.
func (l *Loop) Notify(name string) { l.queue.Add(name) }

// Status returns every container's latest status, sorted by name.
func (l *Loop) Status() []Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Status, 0, len(l.status))
	for _, n := range slices.Sorted(maps.Keys(l.status)) {
		out = append(out, l.status[n])
	}
	return out
}

// Run runs the loop until ctx ends; it returns once every worker stopped.
func (l *Loop) Run(ctx context.Context) error {
	select {
	case <-l.ready:
	case <-ctx.Done():
		return nil
	}
	var wg sync.WaitGroup
	for range l.cfg.Workers {
		wg.Go(func() {
			for {
				name, ok := l.queue.Get()
				if !ok {
					return
				}
				l.process(ctx, name)
				l.queue.Done(name)
			}
		})
	}
	tick := time.NewTicker(l.cfg.Resync)
	defer tick.Stop()
	// Every pass beats: a heartbeat of its own is needed only when it must
	// come more often than the passes (one timer less for an idle daemon).
	var beatC <-chan time.Time
	if l.cfg.HeartbeatEvery < l.cfg.Resync {
		beat := time.NewTicker(l.cfg.HeartbeatEvery)
		defer beat.Stop()
		beatC = beat.C
	}
	l.mu.Lock()
	l.changed, l.full = nil, false // the first pass covers them
	l.mu.Unlock()
	l.pass(ctx)
	l.cfg.Heartbeat(true)
	// Later passes observe and plan on a goroutine of their own, so that
	// a new desired set is passed over meanwhile (with a thousand
	// containers a pass costs tens of milliseconds, which a dropped
	// manifest would otherwise wait for); this goroutine applies the
	// result, but for the containers passed over since it began, whose
	// plans are newer than the pass's.
	var (
		planned chan passResult // the pass in flight; nil when none
		newer   map[string]bool // passed over since it began
		again   bool            // another pass was asked for meanwhile
	)
	startPass := func() {
		if planned != nil {
			again = true
			return
		}
		ch := make(chan passResult, 1)
		planned, newer = ch, map[string]bool{}
		go func() {
			r, _, err := l.plan(ctx)
			ch <- passResult{r, err}
		}()
	}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-l.kick:
			l.mu.Lock()
			names, full := l.changed, l.full
			l.changed, l.full = nil, false
			l.mu.Unlock()
			if full {
				startPass()
				break
			}
			if len(names) > 0 {
				l.passOver(ctx, names)
				if newer != nil {
					maps.Copy(newer, names)
				}
			}
			// With a pass in flight, its end beats: one that hangs
			// stops the beats, as it stopped the loop before.
			if planned == nil {
				l.cfg.Heartbeat(true)
			}
		case res := <-planned:
			l.applyPass(res, newer)
			planned, newer = nil, nil
			l.cfg.Heartbeat(true)
			if again {
				again = false
				startPass()
			}
		case <-tick.C:
			startPass()
		case <-beatC:
			if planned == nil {
				l.cfg.Heartbeat(false)
			}
		}
	}
	if planned != nil {
		<-planned
	}
	l.queue.ShutDown()
	wg.Wait()
	return nil
}

// passResult is what a pass's observation and plan gave.
type passResult struct {
	r   *Result
	err error
}

// plan observes and plans every container.
func (l *Loop) plan(ctx context.Context) (*Result, actual.Set, error) {
	have, err := l.cfg.Observer.Observe(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to observe containers: %w", err)
	}
	if !l.afterSeen.Load() {
		for _, c := range have {
			if c != nil && c.Applied != nil && len(c.Applied.After()) > 0 {
				l.afterSeen.Store(true)
				break
			}
		}
	}
	l.looked.Store(true)
	l.mu.Lock()
	want := *l.want
	l.mu.Unlock()
	return l.cfg.Planner.Plan(l.resolve(ctx, want, have), have, l.cfg.Clock.Now()), have, nil
}

// resolve returns want with the containers that run an image resolved
// against what is observed (a copy when any is; want is shared).
func (l *Loop) resolve(ctx context.Context, want desired.Set, have actual.Set) desired.Set {
	if l.cfg.Images == nil {
		return want
	}
	var out map[string]*desired.Container
	for n, c := range want.Containers {
		if c == nil || c.Image == "" {
			continue
		}
		if out == nil {
			out = maps.Clone(want.Containers)
		}
		out[n] = l.cfg.Images.Resolve(ctx, c, have[n])
	}
	if out != nil {
		want.Containers = out
	}
	return want
}

// planOne observes and plans container name: alone when the observer can
// (the planner's result for one container depends on nothing else but the
// files that name it and the containers of its start order, which related
// adds), else with every other. The plan is nil when the
// container is neither wanted, nor there, nor named by a file.
func (l *Loop) planOne(ctx context.Context, name string) (*ContainerPlan, *actual.Container, error) {
	o, ok := l.cfg.Observer.(OneObserver)
	if !ok {
		r, have, err := l.plan(ctx)
		if err != nil {
			return nil, nil, err
		}
		return r.Get(name), have[name], nil
	}
	c, err := o.ObserveOne(ctx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to observe container %s: %w", name, err)
	}
	l.mu.Lock()
	want := *l.want
	l.mu.Unlock()
	// The planner reads the files in error only (Plan): with a thousand
	// manifests, a walk over every file for one container is not free.
	var invalid map[string]*desired.FileStatus
	for _, f := range want.Invalid() {
		if invalid == nil {
			invalid = map[string]*desired.FileStatus{}
		}
		invalid[f.Path] = f
	}
	one := desired.Set{Containers: map[string]*desired.Container{}, Files: invalid, Revision: want.Revision}
	if w := want.Containers[name]; w != nil {
		if w.Image != "" && l.cfg.Images != nil {
			w = l.cfg.Images.Resolve(ctx, w, c)
		}
		one.Containers[name] = w
	}
	have := actual.Set{}
	if c != nil {
		have[name] = c
	}
	if err := l.related(ctx, o, name, want, one, have); err != nil { // spec.after (order.go)
		return nil, nil, err
	}
	return l.cfg.Planner.Plan(one, have, l.cfg.Clock.Now()).Get(name), c, nil
}

// pass plans every container, publishes their statuses and queues those
// with something to do.
func (l *Loop) pass(ctx context.Context) {
	r, _, err := l.plan(ctx)
	l.applyPass(passResult{r, err}, nil)
}

// applyPass publishes a pass's statuses and hands the workers what it
// found to do, leaving out the containers in newer: they were planned
// again since the pass observed them.
func (l *Loop) applyPass(res passResult, newer map[string]bool) {
	if res.err != nil {
		l.log.Error("pass failed", "err", res.err)
		return
	}
	now := l.cfg.Clock.Now()
	changed := false
	plans := res.r.Containers
	if len(newer) > 0 {
		plans = slices.DeleteFunc(slices.Clone(plans), func(cp *ContainerPlan) bool { return newer[cp.Status.Name] })
	}
	l.mu.Lock()
	seen := make(map[string]bool, len(res.r.Containers))
	for _, cp := range res.r.Containers {
		seen[cp.Status.Name] = true
	}
	for _, cp := range plans {
		changed = l.publishLocked(cp) || changed
	}
	for n := range l.status {
		if !seen[n] && !newer[n] {
			delete(l.status, n)
			changed = true
		}
	}
	l.mu.Unlock()
	if changed {
		l.cfg.OnStatus()
	}
	l.enqueue(plans, now)
}

// publishLocked records cp's status unless a worker is busy with the
// container (its actions set the status as they go); it says whether what
// Status shows changed.
func (l *Loop) publishLocked(cp *ContainerPlan) bool {
	old, ok := l.status[cp.Status.Name]
	if len(cp.Actions) == 0 || cp.Actions[0].Kind == Wait {
		l.status[cp.Status.Name] = cp.Status
		return !ok || !sameStatus(&old, &cp.Status)
	}
	if !ok {
		l.status[cp.Status.Name] = cp.Status
		return true
	}
	return false
}

// enqueue hands the workers the containers with something to do, now or
// at their Wait's time.
func (l *Loop) enqueue(plans []*ContainerPlan, now time.Time) {
	for _, cp := range plans {
		switch {
		case len(cp.Actions) == 0:
		case cp.Actions[0].Kind == Wait:
			l.queue.AddAfter(cp.Status.Name, cp.Actions[0].Until.Sub(now))
		default:
			l.queue.Add(cp.Status.Name)
		}
	}
}

// passOver is pass for the containers in names alone: a new desired set
// changes only those (a dropped manifest in a directory of a thousand
// costs one container's observation and plan, not a thousand).
func (l *Loop) passOver(ctx context.Context, names map[string]bool) {
	now := l.cfg.Clock.Now()
	changed := false
	var queue []*ContainerPlan
	for name := range names {
		cp, _, err := l.planOne(ctx, name)
		if err != nil {
			l.log.Error("unable to plan", "container", name, "err", err)
			l.queue.AddRateLimited(name)
			continue
		}
		l.mu.Lock()
		if cp == nil {
			if _, ok := l.status[name]; ok {
				delete(l.status, name)
				changed = true
			}
		} else {
			changed = l.publishLocked(cp) || changed
			queue = append(queue, cp)
		}
		l.mu.Unlock()
	}
	if changed {
		l.cfg.OnStatus()
	}
	l.enqueue(queue, now)
}

// changedNames returns the containers whose plan may differ between the
// desired sets a and b: added, removed or defined anew (the loader keeps
// an unchanged file's definitions, so a pointer that changed is a new
// definition), and every name of a file whose content or errors changed
// (an invalid file keeps its containers and shows why). A name that did
// not change in substance only costs a look.
func changedNames(a, b desired.Set) map[string]bool {
	out := map[string]bool{}
	for n, c := range a.Containers {
		if b.Containers[n] != c {
			out[n] = true
		}
	}
	for n, c := range b.Containers {
		if a.Containers[n] != c {
			out[n] = true
		}
	}
	sameFile := func(x, y *desired.FileStatus) bool {
		if x == nil || y == nil {
			return x == y
		}
		if x.ContentHash != y.ContentHash || !slices.Equal(x.Containers, y.Containers) || len(x.Errors) != len(y.Errors) {
			return false
		}
		for i := range x.Errors {
			if x.Errors[i].Error() != y.Errors[i].Error() {
				return false
			}
		}
		return true
	}
	names := func(f *desired.FileStatus) {
		if f != nil {
			for _, n := range f.Containers {
				out[n] = true
			}
		}
	}
	for p, f := range a.Files {
		if g := b.Files[p]; !sameFile(f, g) {
			names(f)
			names(g)
		}
	}
	for p, g := range b.Files {
		if _, ok := a.Files[p]; !ok {
			names(g)
		}
	}
	return out
}

func (l *Loop) setStatus(s Status) {
	l.mu.Lock()
	old, ok := l.status[s.Name]
	l.status[s.Name] = s
	l.mu.Unlock()
	if !ok || !sameStatus(&old, &s) {
		l.cfg.OnStatus()
	}
}

// sameStatus says whether a and b show the same (false when unsure).
func sameStatus(a, b *Status) bool {
	if a.Name != b.Name || a.Phase != b.Phase || a.Reason != b.Reason || a.Source != b.Source ||
		a.Restarts != b.Restarts || !a.NextTry.Equal(b.NextTry) || a.Desired != b.Desired ||
		!slices.Equal(a.Errors, b.Errors) {
		return false
	}
	if a.Actual == nil || b.Actual == nil {
		return a.Actual == b.Actual
	}
	return *a.Actual == *b.Actual
}
