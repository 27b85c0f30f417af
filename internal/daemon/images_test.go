package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/image"
)

// fakeStore is a stand-in for image.Store (named as such: the real store
// and registry are tested in image/ and test/e2e): it serves tags from a
// map and counts pulls, which block until release is closed.
type fakeStore struct {
	mu      sync.Mutex
	tags    map[string]string // ref → digest, what a pull resolves
	stored  map[string]string // ref → digest, what Get finds
	pulls   int
	fail    error
	release chan struct{}
}

func (f *fakeStore) img(ref, digest string) *image.Image {
	return &image.Image{Ref: ref, Digest: digest, Config: v1.ConfigFile{Config: v1.Config{Cmd: []string{"/bin/sh"}}}, Layers: []string{"/nonexistent"}}
}

func (f *fakeStore) Pull(ctx context.Context, ref string, progress func(image.Progress)) (*image.Image, error) {
	f.mu.Lock()
	f.pulls++
	rel := f.release
	f.mu.Unlock()
	if rel != nil {
		<-rel
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	f.stored[ref] = f.tags[ref]
	return f.img(ref, f.tags[ref]), nil
}

func (f *fakeStore) Get(ref string) (*image.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.stored[ref]
	if !ok {
		return nil, image.ErrNotFound
	}
	return f.img(ref, d), nil
}

func (f *fakeStore) GetDigest(digest string) (*image.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ref, d := range f.stored {
		if d == digest {
			return f.img(ref, d), nil
		}
	}
	return nil, image.ErrNotFound
}

func (f *fakeStore) Touch(string) error { return nil }

func (f *fakeStore) RefsPath() string { return "" } // nothing cached

func (f *fakeStore) pullCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pulls
}

const testRef = "docker.io/library/busybox:latest"

func imageContainer(t *testing.T, name string, policy desired.PullPolicy) *desired.Container {
	t.Helper()
	src := fmt.Sprintf("apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: %s}\nspec:\n  image: busybox\n  imagePullPolicy: %s\n", name, policy)
	cs, errs := desired.Parse(name+".yaml", []byte(src), desired.ParseOptions{})
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	return cs[0]
}

// resolverFor returns a resolver on store whose notifications arrive on
// the returned channel.
func resolverFor(t *testing.T, store *fakeStore) (*imageResolver, chan string) {
	notes := make(chan string, 100)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return newImageResolver(ctx, store, Layout(t.TempDir()), "", slog.New(slog.DiscardHandler), func(n string) { notes <- n }), notes
}

func waitNote(t *testing.T, notes chan string, name string) {
	t.Helper()
	select {
	case n := <-notes:
		if n != name {
			t.Fatalf("notified %q, want %q", n, name)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s was not notified", name)
	}
}

func live(c *desired.Container, created time.Time) *actual.Container {
	return &actual.Container{Name: c.Name, Status: actual.StatusRunning, InitAlive: true, Pid: 42, Created: created,
		SpecHash: c.Hash, Record: actual.Record{Applied: c}}
}

func TestResolverPullsOnceForTwoContainers(t *testing.T) {
	store := &fakeStore{tags: map[string]string{testRef: "sha256:a"}, stored: map[string]string{}, release: make(chan struct{})}
	r, notes := resolverFor(t, store)
	web, api := imageContainer(t, "web", desired.PullIfNotPresent), imageContainer(t, "api", desired.PullIfNotPresent)
	for _, c := range []*desired.Container{web, api, web} {
		got := r.Resolve(context.Background(), c, nil)
		if !got.Unresolved() || !strings.HasPrefix(got.ImageWait, "pulling "+testRef) || got.ImageFailed {
			t.Fatalf("while pulling: unresolved %v wait %q failed %v", got.Unresolved(), got.ImageWait, got.ImageFailed)
		}
	}
	close(store.release)
	seen := map[string]bool{}
	for range 2 {
		select {
		case n := <-notes:
			seen[n] = true
		case <-time.After(5 * time.Second):
			t.Fatal("no notification after the pull")
		}
	}
	if !seen["web"] || !seen["api"] {
		t.Errorf("notified %v, want web and api", seen)
	}
	if n := store.pullCount(); n != 1 {
		t.Errorf("%d pulls for two containers on one image, want 1", n)
	}
	got := r.Resolve(context.Background(), web, nil)
	if got.Unresolved() || got.ImageDigest != "sha256:a" || got.Spec.Root.Path != r.layout.Rootfs("web") {
		t.Errorf("after the pull: digest %q root %q wait %q", got.ImageDigest, got.Spec.Root.Path, got.ImageWait)
	}
}

func TestResolverKeepsRecordedDigest(t *testing.T) {
	store := &fakeStore{tags: map[string]string{testRef: "sha256:new"}, stored: map[string]string{testRef: "sha256:old"}}
	r, _ := resolverFor(t, store)
	web := imageContainer(t, "web", desired.PullIfNotPresent)
	old := r.Resolve(context.Background(), web, nil)
	store.stored[testRef] = "sha256:new"              // someone pulled the tag again
	store.stored["example.com/keep:1"] = "sha256:old" // the old image is still stored
	got := r.Resolve(context.Background(), web, live(old, time.Now()))
	if got.ImageDigest != "sha256:old" || got.Hash != old.Hash {
		t.Errorf("IfNotPresent must keep running the digest it was created from: got %q", got.ImageDigest)
	}
	if store.pullCount() != 0 {
		t.Errorf("no pull was needed")
	}
}

func TestResolverAlwaysPullsBeforeEachCreate(t *testing.T) {
	store := &fakeStore{tags: map[string]string{testRef: "sha256:a"}, stored: map[string]string{testRef: "sha256:a"}}
	r, notes := resolverFor(t, store)
	web := imageContainer(t, "web", desired.PullAlways)
	if got := r.Resolve(context.Background(), web, nil); !got.Unresolved() {
		t.Fatalf("Always must pull before the first create, even when stored")
	}
	waitNote(t, notes, "web")
	created := r.Resolve(context.Background(), web, nil)
	if created.Unresolved() || store.pullCount() != 1 {
		t.Fatalf("after its pull: unresolved %v, %d pulls", created.Unresolved(), store.pullCount())
	}
	// Running: no pull, whatever the plan asks.
	have := live(created, time.Now())
	for range 3 {
		if got := r.Resolve(context.Background(), web, have); got.Unresolved() || store.pullCount() != 1 {
			t.Fatalf("a live Always container pulled again (%d pulls)", store.pullCount())
		}
	}
	// It exits: the restart pulls first, once, and picks up a moved tag.
	store.tags[testRef] = "sha256:b"
	have.Status, have.InitAlive = actual.StatusStopped, false
	if got := r.Resolve(context.Background(), web, have); !got.Unresolved() {
		t.Fatalf("the restart of an Always container must pull first")
	}
	waitNote(t, notes, "web")
	got := r.Resolve(context.Background(), web, have)
	if got.Unresolved() || got.ImageDigest != "sha256:b" || store.pullCount() != 2 {
		t.Errorf("after the restart's pull: digest %q, %d pulls", got.ImageDigest, store.pullCount())
	}
	if again := r.Resolve(context.Background(), web, have); again.Unresolved() || store.pullCount() != 2 {
		t.Errorf("planned again before the restart: pulled again (%d pulls)", store.pullCount())
	}
}

func TestResolverNeverAndFailures(t *testing.T) {
	store := &fakeStore{tags: map[string]string{}, stored: map[string]string{}, fail: errors.New("manifest unknown")}
	r, notes := resolverFor(t, store)
	never := imageContainer(t, "never", desired.PullNever)
	got := r.Resolve(context.Background(), never, nil)
	if !got.ImageFailed || !strings.Contains(got.ImageWait, "is not in the store and imagePullPolicy is Never") || store.pullCount() != 0 {
		t.Errorf("Never with a missing image: failed %v wait %q pulls %d", got.ImageFailed, got.ImageWait, store.pullCount())
	}
	web := imageContainer(t, "web", desired.PullIfNotPresent)
	r.Resolve(context.Background(), web, nil)
	waitNote(t, notes, "web")
	got = r.Resolve(context.Background(), web, nil)
	if !got.ImageFailed || !strings.Contains(got.ImageWait, "failed to pull "+testRef+": manifest unknown; next try in ") {
		t.Errorf("after a failed pull: failed %v wait %q", got.ImageFailed, got.ImageWait)
	}
	if store.pullCount() != 1 {
		t.Errorf("a pull within its backoff: %d pulls", store.pullCount())
	}
	// The backoff's end asks for another look, which pulls again.
	waitNote(t, notes, "web")
	r.Resolve(context.Background(), web, nil)
	waitNote(t, notes, "web")
	if store.pullCount() != 2 {
		t.Errorf("after the backoff: %d pulls, want 2", store.pullCount())
	}
}
