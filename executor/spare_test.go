package executor

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"reconciled.dev/reconciled/internal/testutil"
)

// A create that finds no spare ready, while a refill of its kind is on its
// way, gets the refill's monitor and init instead of launching a pair of
// its own. When that launch takes longer than spareWaitMax, the create
// launches its own, and the refill's pair, once made, is the next
// create's.
func TestCreateTakesRefillInFlight(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := testutil.BusyboxRootfs(t)
	r, err := New(filepath.Join(t.TempDir(), "state"), WithSpares(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	// Each launch of a spare, once made, waits for a token (or for the
	// end of the test): the test decides when a refill is done.
	made := make(chan *pair, 8)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before Close, which waits for the launches
	r.spares.launched = func(p *pair) {
		made <- p
		<-release
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := testutil.Name(t, 40)
	// tryCreate creates a container of the test's and returns its state.
	tryCreate := func(suffix string) (State, error) {
		id := base + "-" + suffix
		t.Cleanup(func() { r.Delete(context.Background(), id, true) })
		spec := testutil.DefaultSpec("sleep", "1000")
		spec.Root.Path = rootfs
		if err := r.Create(ctx, id, filepath.Dir(rootfs), CreateOptions{Spec: spec}); err != nil {
			return State{}, fmt.Errorf("create %s: %w", id, err)
		}
		st, err := r.State(ctx, id)
		if err != nil {
			return State{}, err
		}
		return *st, nil
	}
	create := func(suffix string) State {
		t.Helper()
		st, err := tryCreate(suffix)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	next := func(what string) *pair {
		t.Helper()
		select {
		case p := <-made:
			return p
		case <-time.After(10 * time.Second):
			t.Fatalf("no spare launched %s", what)
			return nil
		}
	}
	waiters := func() int {
		r.spares.mu.Lock()
		defer r.spares.mu.Unlock()
		return total(r.spares.waiting)
	}
	idle := func() int {
		r.spares.mu.Lock()
		defer r.spares.mu.Unlock()
		return total(r.spares.idle)
	}
	// waitUntil fails the test with what when cond does not hold within
	// 10 s.
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}

	// The first create finds no spare and launches its pair; the refill
	// that follows it is held once made.
	create("first")
	inFlight := next("after the first create")

	// The second create waits for that refill and gets its pair.
	type result struct {
		st  State
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := tryCreate("second")
		done <- result{st, err}
	}()
	waitUntil("the second create did not wait for the refill in flight", func() bool { return waiters() > 0 })
	release <- struct{}{}
	second := <-done
	if second.err != nil {
		t.Fatal(second.err)
	}
	if second.st.MonitorPid != inFlight.monPid || second.st.Pid != inFlight.pid {
		t.Errorf("second create: monitor %d, init %d; want the refill's, monitor %d, init %d", second.st.MonitorPid, second.st.Pid, inFlight.monPid, inFlight.pid)
	}

	// The refill that replaces it is held past spareWaitMax: the third
	// create launches its own pair.
	stuck := next("after the second create")
	start := time.Now()
	third := create("third")
	if d := time.Since(start); d < spareWaitMax {
		t.Errorf("third create returned after %v, before spareWaitMax (%v): it did not wait for the refill", d, spareWaitMax)
	}
	if third.MonitorPid == stuck.monPid {
		t.Errorf("third create got the refill held past spareWaitMax")
	}
	if n := waiters(); n != 0 {
		t.Errorf("%d creates still wait for a refill", n)
	}
	// Released, that refill's pair is a spare: the next create's.
	release <- struct{}{}
	waitUntil("the refill released late is not kept as a spare", func() bool { return idle() > 0 })
	if fourth := create("fourth"); fourth.MonitorPid != stuck.monPid || fourth.Pid != stuck.pid {
		t.Errorf("fourth create: monitor %d, init %d; want the spare made late, monitor %d, init %d", fourth.MonitorPid, fourth.Pid, stuck.monPid, stuck.pid)
	}
}

// total is the number of elements in all of m's slices.
func total[T any](m map[int][]T) int {
	n := 0
	for _, q := range m {
		n += len(q)
	}
	return n
}
