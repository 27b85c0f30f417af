package daemon

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/internal/testutil/registry"
	"reconciled.dev/reconciled/reconciler"
)

func TestImagesInUse(t *testing.T) {
	if _, err := imagesInUse(nil, nil, nil); !errors.Is(err, errNotLoaded) {
		t.Errorf("before the manifests are read: %v, want errNotLoaded", err)
	}
	want := &desired.Set{Containers: map[string]*desired.Container{
		// web's file is invalid now: the set keeps its last good
		// definition, which names the image.
		"web":  {Name: "web", Image: "r.example/web:1"},
		"dir":  {Name: "dir"},
		"gone": nil,
	}}
	statuses := []reconciler.Status{
		{Name: "web", Desired: &desired.Container{Name: "web", Image: "r.example/web:1", ImageDigest: "sha256:web"}},
		{Name: "old", Actual: &actual.Container{Record: actual.Record{Applied: &desired.Container{Image: "r.example/old:1", ImageDigest: "sha256:old"}}}},
	}
	records := map[string]actual.Record{
		"stopped": {Applied: &desired.Container{Image: "r.example/stopped:1", ImageDigest: "sha256:stopped"}},
		"plain":   {Applied: &desired.Container{Name: "plain"}},
		"unknown": {},
	}
	u, err := imagesInUse(want, statuses, records)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(u.Refs)
	slices.Sort(u.Digests)
	u.Refs, u.Digests = slices.Compact(u.Refs), slices.Compact(u.Digests)
	if w := []string{"r.example/old:1", "r.example/stopped:1", "r.example/web:1"}; !slices.Equal(u.Refs, w) {
		t.Errorf("refs %q, want %q", u.Refs, w)
	}
	if w := []string{"sha256:old", "sha256:stopped", "sha256:web"}; !slices.Equal(u.Digests, w) {
		t.Errorf("digests %q, want %q", u.Digests, w)
	}
}

// fakeGCStore stands in for image.Store's GC (the real one is tested in
// image/ against a tmpfs): it reports a usage and removes nothing.
type fakeGCStore struct {
	mu     sync.Mutex
	usage  image.Usage
	calls  int
	inUse  []error
	policy image.GCPolicy
}

func (f *fakeGCStore) GC(ctx context.Context, p image.GCPolicy, inUse func() (image.InUse, error), now time.Time) (image.GCResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.policy = p
	if f.usage.UsedPercent() > p.HighPercent {
		_, err := inUse()
		f.inUse = append(f.inUse, err)
		if err != nil {
			return image.GCResult{Before: f.usage, After: f.usage}, err
		}
	}
	return image.GCResult{Before: f.usage, After: f.usage}, nil
}

func (f *fakeGCStore) Usage() (image.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.usage, nil
}

func (f *fakeGCStore) set(used, total uint64) {
	f.mu.Lock()
	f.usage = image.Usage{Path: "/var/lib/reconciled/images", Total: total, Free: total - used, Avail: total - used}
	f.mu.Unlock()
}

func (f *fakeGCStore) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Above the high-water mark with nothing left to remove, the report says
// "disk pressure" (and -o json's diskPressure); below it, it does not.
// Until the manifests are read, the GC is told nothing is known to be
// unused.
func TestImageGCDiskPressureInReport(t *testing.T) {
	fs := &fakeGCStore{}
	fs.set(91, 100)
	var want *desired.Set
	var mu sync.Mutex
	gc := newImageGC(fs, image.DefaultGCPolicy, time.Hour, func() (image.InUse, error) {
		mu.Lock()
		defer mu.Unlock()
		return imagesInUse(want, nil, nil)
	}, slog.New(slog.DiscardHandler))
	loop := reconciler.New(reconciler.Config{})
	pub := newPublisher(publisherConfig{loop: loop, events: newEventLog(), exits: &lastExits{}, layout: Layout(t.TempDir()),
		manifests: "/etc/reconciled.d", log: slog.New(slog.DiscardHandler), imageDisk: gc.Disk})

	if rep := pub.Report(); rep.DiskPressure || rep.ImageDisk != nil {
		t.Errorf("before the first check: %+v", rep)
	}
	gc.check(context.Background())
	rep := pub.Report()
	if !rep.DiskPressure || rep.ImageDisk == nil {
		t.Fatalf("at 91 %%: diskPressure %v, imageDisk %+v", rep.DiskPressure, rep.ImageDisk)
	}
	if got, w := rep.ImageDisk.PressureLine(), "disk pressure: /var/lib/reconciled/images 91 % used (high-water mark 85 %)"; got != w {
		t.Errorf("pressure line %q, want %q", got, w)
	}
	if !errors.Is(fs.inUse[0], errNotLoaded) {
		t.Errorf("GC before the manifests were read was told %v", fs.inUse)
	}

	mu.Lock()
	want = &desired.Set{}
	mu.Unlock()
	fs.set(50, 100)
	gc.check(context.Background())
	if rep := pub.Report(); rep.DiskPressure || rep.ImageDisk == nil || rep.ImageDisk.UsedPercent != 50 {
		t.Errorf("at 50 %%: diskPressure %v, imageDisk %+v", rep.DiskPressure, rep.ImageDisk)
	}
}

// Run checks at once, on each kick and each period, until ctx ends.
func TestImageGCRunsOnKick(t *testing.T) {
	fs := &fakeGCStore{}
	fs.set(10, 100)
	gc := newImageGC(fs, image.DefaultGCPolicy, time.Hour, func() (image.InUse, error) { return image.InUse{}, nil }, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		gc.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitCalls := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); fs.callCount() < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d checks, want %d", fs.callCount(), n)
			}
		}
	}
	waitCalls(1)
	gc.Kick()
	waitCalls(2)
	if fs.policy != image.DefaultGCPolicy {
		t.Errorf("policy %+v", fs.policy)
	}
}

// With the real store: the GC the daemon wires removes an image nothing
// uses, and keeps the one a desired container names (its file may be
// invalid: the set keeps it) and the one a container's record runs.
func TestImageGCKeepsWhatContainersUse(t *testing.T) {
	testutil.RequireRoot(t) // unpacking chowns
	reg := registry.Start(t)
	store, err := image.Open(image.Options{Root: filepath.Join(t.TempDir(), "images"), RegistryConfig: filepath.Join(t.TempDir(), "none.json")})
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string]string{}
	for _, n := range []string{"desired", "recorded", "free"} {
		img := registry.NewImage(t, v1.Config{Cmd: []string{"/bin/true"}}, registry.FileLayer(t, map[string]string{n: n}))
		digests[n] = registry.Push(t, reg, "gc/"+n+":1", img)
		if _, err := store.Pull(context.Background(), reg.Ref("gc/"+n+":1"), nil); err != nil {
			t.Fatal(err)
		}
	}
	want := &desired.Set{Containers: map[string]*desired.Container{"web": {Name: "web", Image: reg.Ref("gc/desired:1")}}}
	records := map[string]actual.Record{"db": {Applied: &desired.Container{Name: "db", Image: "elsewhere/db:1", ImageDigest: digests["recorded"]}}}
	// Marks at 0 %: anything unused and older than the minimum age (none)
	// goes.
	gc := newImageGC(store, image.GCPolicy{}, time.Hour, func() (image.InUse, error) {
		return imagesInUse(want, nil, records)
	}, slog.New(slog.DiscardHandler))
	gc.check(context.Background())
	got, err := store.Digests()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[reg.Ref("gc/free:1")]; ok || len(got) != 2 {
		t.Errorf("left %v, want the desired and the recorded images", got)
	}
	if !gc.Disk().Pressure {
		t.Errorf("above a 0 %% mark with every image left in use: no pressure (%+v)", gc.Disk())
	}
}
