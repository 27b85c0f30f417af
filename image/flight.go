package image

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// flight runs one function per key at a time, for every caller that asks
// for that key meanwhile (singleflight). Unlike x/sync/singleflight, a
// caller whose context ends stops waiting alone: the work goes on for the
// others, and is cancelled only when no caller waits for it any more. The
// work reports bytes with add; each waiter's sink counts them, including
// those done before it joined.
type flight struct {
	mu    sync.Mutex
	calls map[string]*call
	wg    sync.WaitGroup // running work, for tests to wait on
}

type call struct {
	done    chan struct{}
	err     error
	cancel  context.CancelFunc
	waiters int
	n       int64 // bytes reported so far
	sinks   []*atomic.Int64
}

func (f *flight) do(ctx context.Context, key string, sink *atomic.Int64, fn func(ctx context.Context, add func(int64)) error) error {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = make(map[string]*call)
	}
	c := f.calls[key]
	if c == nil {
		// The work outlives the caller that started it: detach it from
		// that caller's cancellation, keep its values.
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &call{done: make(chan struct{}), cancel: cancel}
		f.calls[key] = c
		add := func(n int64) {
			f.mu.Lock()
			c.n += n
			for _, s := range c.sinks {
				s.Add(n)
			}
			f.mu.Unlock()
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			err := fn(wctx, add)
			f.mu.Lock()
			c.err = err
			if f.calls[key] == c {
				delete(f.calls, key)
			}
			f.mu.Unlock()
			cancel()
			close(c.done)
		}()
	}
	c.waiters++
	if sink != nil {
		sink.Add(c.n)
		c.sinks = append(c.sinks, sink)
	}
	f.mu.Unlock()

	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		f.mu.Lock()
		c.waiters--
		if sink != nil {
			for i, s := range c.sinks {
				if s == sink {
					c.sinks = append(c.sinks[:i], c.sinks[i+1:]...)
					break
				}
			}
		}
		if c.waiters == 0 {
			// Nobody wants it any more. A later caller starts afresh
			// rather than joining work that is being cancelled.
			c.cancel()
			if f.calls[key] == c {
				delete(f.calls, key)
			}
		}
		f.mu.Unlock()
		return fmt.Errorf("waiting for %s: %w", key, context.Cause(ctx))
	}
}
