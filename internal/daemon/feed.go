package daemon

import (
	"context"
	"log/slog"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/reconciler"
)

// manifestFeed watches the manifests directory and hands each desired set
// read to the parts that follow it (the probes, the publisher, the loop).
// A reload (SIGHUP) replaces the watcher by a new one, whose first set is
// a full read of the directory, and has every container looked at again.
type manifestFeed struct {
	dir      string
	insecure bool // --insecure-manifests
	// resync is the watcher's full re-read, a safety net for lost
	// inotify events; with a thousand files it is the idle daemon's
	// largest cost.
	resync time.Duration
	reload <-chan struct{}
	store  *actual.Store
	notify *notifier
	health *healthManager
	pub    *publisher
	loop   *reconciler.Loop
	log    *slog.Logger

	// The running watcher, its cancel and the last set read: run's once
	// it runs.
	sets   <-chan desired.Set
	cancel context.CancelFunc
	last   desired.Set
}

// watch starts a watcher that begins from prev.
func (f *manifestFeed) watch(ctx context.Context, prev desired.Set) (<-chan desired.Set, error) {
	return desired.Watch(ctx, f.dir, desired.WatchOptions{
		Options: desired.Options{InsecureManifests: f.insecure},
		Prev:    prev,
		Resync:  f.resync,
		Logger:  f.log.With("component", "manifests"),
	})
}

// start starts the first watcher, from seed (the records' set). Call
// stop when run will not (an error before it starts), or after it ended.
func (f *manifestFeed) start(ctx context.Context, seed desired.Set) error {
	wctx, cancel := context.WithCancel(ctx)
	f.cancel, f.last = cancel, seed
	sets, err := f.watch(wctx, seed)
	f.sets = sets
	return err
}

// stop ends the running watcher.
func (f *manifestFeed) stop() { f.cancel() }

// run feeds the sets read, and serves reloads, until ctx ends.
func (f *manifestFeed) run(ctx context.Context) {
	reloading := false
	for {
		select {
		case s, ok := <-f.sets:
			if !ok {
				f.cancel()
				return // ctx ended
			}
			invalid := 0 // errors, as len(s.Errors()), without a walk over every file
			for _, st := range s.Invalid() {
				invalid += len(st.Errors)
			}
			f.log.Info("manifests loaded", "containers", len(s.Containers), "files", len(s.Files), "invalid", invalid, "revision", s.Revision)
			f.last = s
			rescan := reloading
			if reloading {
				reloading = false
				for name := range f.store.Records() {
					f.store.Invalidate(name)
				}
				f.notify.Rescanned()
			}
			f.health.SetDesired(s)
			f.pub.SetDesired(s)
			f.loop.SetDesired(s)
			if rescan {
				f.loop.Rescan()
			}
		case <-f.reload:
			f.log.Info("reload requested: reading every manifest and looking at every container again")
			f.notify.Reloading()
			f.cancel()
			for range f.sets {
				// The old watcher is done once its channel is closed.
			}
			var werr error
			var wctx context.Context
			wctx, f.cancel = context.WithCancel(ctx)
			if f.sets, werr = f.watch(wctx, f.last); werr != nil {
				f.log.Error("unable to watch the manifests again; the last ones stay in force until the next reload", "err", werr)
				f.sets = nil
				f.notify.Rescanned()
				f.health.SetDesired(f.last)
				f.loop.SetDesired(f.last)
				f.loop.Rescan()
				continue
			}
			reloading = true
		case <-ctx.Done():
			f.cancel()
			return
		}
	}
}
