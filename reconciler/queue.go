package reconciler

import (
	"sync"
	"time"
)

// RateLimiter says how long to wait before an item is retried
// (client-go's workqueue.RateLimiter, for container names).
type RateLimiter interface {
	// When is the delay before the next retry of name, and counts it.
	When(name string) time.Duration
	// Forget resets name's count after a success.
	Forget(name string)
	// NumRequeues is how many retries of name are counted.
	NumRequeues(name string) int
}

// NewExponentialRateLimiter retries after base, doubling per retry up to
// max.
func NewExponentialRateLimiter(base, max time.Duration) RateLimiter {
	return &expLimiter{base: base, max: max, n: map[string]int{}}
}

type expLimiter struct {
	mu        sync.Mutex
	base, max time.Duration
	n         map[string]int
}

func (l *expLimiter) When(name string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.n[name]
	l.n[name] = n + 1
	d := l.base
	for i := 0; i < n && d < l.max; i++ {
		d *= 2
	}
	return min(d, l.max)
}

func (l *expLimiter) Forget(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.n, name)
}

func (l *expLimiter) NumRequeues(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[name]
}

// Clock is the time the loop reads and the timers its queue sets: the
// real clock by default; a test may drive one of its own.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed (as
	// time.AfterFunc); the returned stop cancels that call unless it has
	// begun, and says whether it cancelled it.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// realClock is the Clock of the time package.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// queue is a work queue of container names with client-go's "stingy"
// semantics: a name is queued at most once (dirty), and a name being
// processed is never handed out again until Done (processing); one added
// meanwhile is handed out after Done. AddAfter delays an add, keeping the
// earliest of several.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []string
	dirty      map[string]bool
	processing map[string]bool
	waiting    map[string]*delayed
	shutdown   bool
	limiter    RateLimiter
	clock      Clock
}

type delayed struct {
	at   time.Time
	stop func() bool // cancels the timer
}

// newQueue returns a queue whose delayed adds wait on clock (the real
// clock when nil).
func newQueue(l RateLimiter, clock Clock) *queue {
	if clock == nil {
		clock = realClock{}
	}
	q := &queue{
		dirty:      map[string]bool{},
		processing: map[string]bool{},
		waiting:    map[string]*delayed{},
		limiter:    l,
		clock:      clock,
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues name now.
func (q *queue) Add(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(name)
}

func (q *queue) addLocked(name string) {
	if q.shutdown || q.dirty[name] {
		return
	}
	q.dirty[name] = true
	if q.processing[name] {
		return // handed out again after Done
	}
	q.items = append(q.items, name)
	q.cond.Signal()
}

// AddAfter queues name after d; of several delayed adds the earliest wins.
func (q *queue) AddAfter(name string, d time.Duration) {
	if d <= 0 {
		q.Add(name)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	at := q.clock.Now().Add(d)
	if w := q.waiting[name]; w != nil {
		if !at.Before(w.at) {
			return
		}
		w.stop()
	}
	w := &delayed{at: at}
	w.stop = q.clock.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.waiting[name] == w {
			delete(q.waiting, name)
			q.addLocked(name)
		}
	})
	q.waiting[name] = w
}

// AddRateLimited queues name after its rate limiter's delay.
func (q *queue) AddRateLimited(name string) { q.AddAfter(name, q.limiter.When(name)) }

// Forget resets name's retry delay.
func (q *queue) Forget(name string) { q.limiter.Forget(name) }

// Get blocks until a name is ready and hands it out; ok is false once the
// queue is shut down.
func (q *queue) Get() (name string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", false
	}
	name, q.items = q.items[0], q.items[1:]
	q.processing[name] = true
	delete(q.dirty, name)
	return name, true
}

// Done marks name processed; if it was added meanwhile it is queued again.
func (q *queue) Done(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, name)
	if q.dirty[name] && !q.shutdown {
		q.items = append(q.items, name)
		q.cond.Signal()
	}
}

// ShutDown makes Get return false and drops every pending add.
func (q *queue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for _, w := range q.waiting {
		w.stop()
	}
	q.waiting = map[string]*delayed{}
	q.cond.Broadcast()
}
