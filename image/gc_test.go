package image

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/internal/testutil/registry"
)

func TestCandidates(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	h := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	refs := map[string]refRecord{
		"r.example/a:1":          {Digest: h('a'), Pulled: now.Add(-5 * time.Hour)},
		"r.example/b:1":          {Digest: h('b'), Pulled: now.Add(-4 * time.Hour)},
		"r.example/c:1":          {Digest: h('c'), Pulled: now.Add(-9 * time.Hour), LastUsed: now.Add(-time.Hour)},
		"r.example/d:1":          {Digest: h('d'), Pulled: now.Add(-time.Minute)},
		"r.example/e:1":          {Digest: h('e'), Index: h('f'), Pulled: now.Add(-7 * time.Hour)},
		"r.example/g:1":          {Digest: h('1'), Pulled: now.Add(-7 * time.Hour)},
		"r.example/g@" + h('2'):  {Digest: h('2'), Pulled: now.Add(-8 * time.Hour)},
		"docker.io/library/x:1":  {Digest: h('3'), Pulled: now.Add(-8 * time.Hour)},
		"r.example/tie:2":        {Digest: h('4'), Pulled: now.Add(-6 * time.Hour)},
		"r.example/tie:1":        {Digest: h('5'), Pulled: now.Add(-6 * time.Hour)},
		"r.example/twin:1":       {Digest: h('b'), Pulled: now.Add(-9 * time.Hour)},
		"r.example/untouched:1":  {Digest: h('6'), Pulled: now.Add(-3 * time.Hour), LastUsed: now.Add(-30 * time.Second)},
		"r.example/repo-byref:1": {Digest: h('7'), Pulled: now.Add(-10 * time.Hour)},
	}
	all := func() []string {
		var ks []string
		for k := range refs {
			ks = append(ks, k)
		}
		return ks
	}()
	for _, tc := range []struct {
		name   string
		used   InUse
		minAge time.Duration
		want   []string
	}{
		{
			name:   "nothing used, no minimum age: least recently used first, ties by reference",
			minAge: 0,
			want: []string{"r.example/repo-byref:1", "r.example/twin:1", "docker.io/library/x:1", "r.example/g@" + h('2'),
				"r.example/e:1", "r.example/g:1", "r.example/tie:1", "r.example/tie:2", "r.example/a:1", "r.example/b:1",
				"r.example/c:1", "r.example/d:1", "r.example/untouched:1"},
		},
		{
			name:   "the minimum age protects what was pulled or used lately",
			minAge: 2 * time.Minute,
			want: []string{"r.example/repo-byref:1", "r.example/twin:1", "docker.io/library/x:1", "r.example/g@" + h('2'),
				"r.example/e:1", "r.example/g:1", "r.example/tie:1", "r.example/tie:2", "r.example/a:1", "r.example/b:1",
				"r.example/c:1"},
		},
		{
			name: "in use by reference (normalized), digest, index digest, or a reference by digest of the repository",
			used: InUse{
				Refs:    []string{"x:1", "r.example/repo-byref@" + h('7'), "r.example/g@" + h('1')},
				Digests: []string{h('b'), h('f')},
			},
			minAge: 2 * time.Minute,
			want:   []string{"r.example/g@" + h('2'), "r.example/tie:1", "r.example/tie:2", "r.example/a:1", "r.example/c:1"},
		},
		{
			name:   "everything in use",
			used:   InUse{Refs: all},
			minAge: 0,
			want:   nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := candidates(refs, tc.used.parse(), tc.minAge, now)
			if !slices.Equal(got, tc.want) {
				t.Errorf("candidates:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestGCPolicyCheck(t *testing.T) {
	for _, tc := range []struct {
		p  GCPolicy
		ok bool
	}{
		{DefaultGCPolicy, true},
		{GCPolicy{HighPercent: 80, LowPercent: 80}, true},
		{GCPolicy{HighPercent: 101, LowPercent: 80}, false},
		{GCPolicy{HighPercent: 80, LowPercent: 85}, false},
		{GCPolicy{HighPercent: 80, LowPercent: -1}, false},
		{GCPolicy{HighPercent: 80, LowPercent: 70, MinAge: -time.Second}, false},
	} {
		if err := tc.p.Check(); (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadPolicy)) {
			t.Errorf("%+v: %v", tc.p, err)
		}
	}
}

func TestUsedPercent(t *testing.T) {
	// ext4 with reserved blocks: df shows used / (used + avail).
	u := Usage{Total: 1000, Free: 300, Avail: 250}
	if got := u.UsedPercent(); fmt.Sprintf("%.2f", got) != "73.68" {
		t.Errorf("UsedPercent = %v, want 700/950", got)
	}
	if got := (Usage{}).UsedPercent(); got != 0 {
		t.Errorf("empty: %v", got)
	}
}

// tmpfsStore opens a store on a tmpfs of sizeMiB of its own, unmounted
// (after the store's work ended) before the temp dir goes.
func tmpfsStore(t *testing.T, sizeMiB int) *Store {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%dm,mode=0700", sizeMiB)); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return newStore(t, Options{Root: filepath.Join(dir, "images")})
}

// randomImage is an image of one layer holding sizeKiB of incompressible
// bytes (seeded by name, so one name gives one digest), above the given
// shared layers.
func randomImage(t *testing.T, name string, sizeKiB int, shared ...v1.Layer) v1.Image {
	t.Helper()
	return registry.NewImage(t, v1.Config{Cmd: []string{"/bin/true"}}, append(shared, randomLayer(t, name, sizeKiB))...)
}

func randomLayer(t *testing.T, name string, sizeKiB int) v1.Layer {
	t.Helper()
	var seed [32]byte
	copy(seed[:], name)
	buf := make([]byte, sizeKiB<<10)
	rand.NewChaCha8(seed).Read(buf)
	return registry.FileLayer(t, map[string]string{"data/" + name: string(buf)})
}

// setUse sets a reference's pull and last-use times.
func setUse(t *testing.T, s *Store, ref string, pulled, lastUsed time.Time) {
	t.Helper()
	err := s.updateRefs(func(refs map[string]refRecord) error {
		rec, ok := refs[ref]
		if !ok {
			return fmt.Errorf("%s not recorded", ref)
		}
		rec.Pulled, rec.LastUsed = pulled, lastUsed
		refs[ref] = rec
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func refNames(t *testing.T, s *Store) []string {
	t.Helper()
	d, err := s.Digests()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range d {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// GC on a store whose file system passes the high-water mark removes
// only unused images, least recently used (else pulled) first, stops at
// the low-water mark, and never removes one used or pulled within the
// minimum age.
func TestGCRemovesLeastRecentlyUsedDownToLowWaterMark(t *testing.T) {
	reg := pullTest(t)
	s := tmpfsStore(t, 32)
	ctx := context.Background()
	empty, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c", "d", "e", "f"}
	ref := func(n string) string { return reg.Ref("gc/" + n + ":1") }
	digests := map[string]string{}
	for _, n := range names {
		digests[n] = registry.Push(t, reg, "gc/"+n+":1", randomImage(t, n, 2048))
		if _, err := s.Pull(ctx, ref(n), nil); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	// a: a desired container names it; b: a container's record runs it;
	// c: pulled long ago but used an hour ago; d, e: pulled 4 h and 3 h
	// ago, never used; f: just pulled.
	setUse(t, s, ref("a"), now.Add(-6*time.Hour), time.Time{})
	setUse(t, s, ref("b"), now.Add(-5*time.Hour), time.Time{})
	setUse(t, s, ref("c"), now.Add(-10*time.Hour), now.Add(-time.Hour))
	setUse(t, s, ref("d"), now.Add(-4*time.Hour), time.Time{})
	setUse(t, s, ref("e"), now.Add(-3*time.Hour), time.Time{})
	full, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("6 images: %.1f %% used (empty: %.1f %%)", full.UsedPercent(), empty.UsedPercent())
	per := (full.UsedPercent() - empty.UsedPercent()) / 6
	if per < 5 {
		t.Fatalf("an image takes %.1f %% of the tmpfs; the test needs more", per)
	}
	used := func() (InUse, error) {
		return InUse{Refs: []string{ref("a")}, Digests: []string{digests["b"]}}, nil
	}
	// Below the high-water mark: nothing happens.
	p := GCPolicy{HighPercent: full.UsedPercent() + 1, LowPercent: 0, MinAge: DefaultGCMinAge}
	res, err := s.GC(ctx, p, used, time.Now())
	if err != nil || len(res.Removed) != 0 {
		t.Fatalf("GC below the high-water mark: %+v, %v", res, err)
	}
	// Above it, with a low-water mark that takes two images to reach.
	p = GCPolicy{HighPercent: full.UsedPercent() - 1, LowPercent: full.UsedPercent() - 1.5*per, MinAge: DefaultGCMinAge}
	res, err = s.GC(ctx, p, used, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Removed {
		got = append(got, r.Ref)
		if r.Freed < 2<<20 {
			t.Errorf("removing %s freed %d bytes, want at least its 2 MiB layer", r.Ref, r.Freed)
		}
	}
	if want := []string{ref("d"), ref("e")}; !slices.Equal(got, want) {
		t.Errorf("GC removed %q, want %q (least recently used first, down to the low-water mark)", got, want)
	}
	if res.After.UsedPercent() > p.LowPercent || res.Short {
		t.Errorf("after GC: %.1f %% used (short %v), want at most %.1f %%", res.After.UsedPercent(), res.Short, p.LowPercent)
	}
	if res.Freed != res.Removed[0].Freed+res.Removed[1].Freed {
		t.Errorf("Freed %d is not the sum of the removals'", res.Freed)
	}
	if want := []string{ref("a"), ref("b"), ref("c"), ref("f")}; !slices.Equal(refNames(t, s), want) {
		t.Errorf("left: %q, want %q", refNames(t, s), want)
	}
	for _, n := range []string{"a", "b", "c", "f"} {
		if _, err := s.Get(ref(n)); err != nil {
			t.Errorf("a kept image is not whole: %v", err)
		}
	}

	// With no low-water mark to reach, c goes too; a and b are in use and
	// f younger than the minimum age: GC falls short and says so.
	p.HighPercent, p.LowPercent = res.After.UsedPercent()-1, 0
	res, err = s.GC(ctx, p, used, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0].Ref != ref("c") || !res.Short {
		t.Errorf("second GC: %+v", res)
	}
	if want := []string{ref("a"), ref("b"), ref("f")}; !slices.Equal(refNames(t, s), want) {
		t.Errorf("left: %q, want %q", refNames(t, s), want)
	}
	// Once f is older than the minimum age, it goes.
	p.HighPercent = res.After.UsedPercent() - 1
	res, err = s.GC(ctx, p, used, time.Now().Add(DefaultGCMinAge+time.Second))
	if err != nil || len(res.Removed) != 1 || res.Removed[0].Ref != ref("f") {
		t.Errorf("GC past f's minimum age: %+v, %v", res, err)
	}
}

// An image a container runs is kept whole by its digest even when no
// reference records it any more (its tag moved on), and a layer shared
// between two images survives the removal of one.
func TestPruneKeepsSharedLayersAndRunningDigests(t *testing.T) {
	reg := pullTest(t)
	s := newStore(t, Options{})
	ctx := context.Background()
	shared := randomLayer(t, "shared", 512)
	one := randomImage(t, "one", 64, shared)
	two := randomImage(t, "two", 64, shared)
	registry.Push(t, reg, "p/one:1", one)
	d2 := registry.Push(t, reg, "p/two:1", two)
	for _, r := range []string{"p/one:1", "p/two:1"} {
		if _, err := s.Pull(ctx, reg.Ref(r), nil); err != nil {
			t.Fatal(err)
		}
	}
	imgTwo, err := s.Get(reg.Ref("p/two:1"))
	if err != nil {
		t.Fatal(err)
	}
	// Just pulled: a prune with the minimum age removes nothing.
	res, err := s.Prune(ctx, InUse{}, DefaultGCMinAge, time.Now())
	if err != nil || len(res.Removed) != 0 {
		t.Fatalf("prune of images just pulled: %+v, %v", res, err)
	}
	// two in use: one goes, the shared layer stays.
	res, err = s.Prune(ctx, InUse{Refs: []string{reg.Ref("p/two:1")}}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0].Ref != reg.Ref("p/one:1") {
		t.Fatalf("prune: %+v", res)
	}
	if f := res.Removed[0].Freed; f < 64<<10 || f >= 512<<10 {
		t.Errorf("removing one freed %d bytes: want its own layer's (64 KiB and some), not the shared 512 KiB", f)
	}
	if _, err := s.Get(reg.Ref("p/two:1")); err != nil {
		t.Errorf("two after one's removal: %v", err)
	}
	for _, l := range imgTwo.Layers {
		if _, err := os.Stat(l); err != nil {
			t.Errorf("layer of two: %v", err)
		}
	}

	// two's tag moves on; a container still runs two's digest.
	registry.Push(t, reg, "p/two:1", randomImage(t, "three", 64))
	if _, err := s.Pull(ctx, reg.Ref("p/two:1"), nil); err != nil {
		t.Fatal(err)
	}
	setUse(t, s, reg.Ref("p/two:1"), time.Now().Add(-time.Hour), time.Time{})
	res, err = s.Prune(ctx, InUse{Digests: []string{d2}}, DefaultGCMinAge, time.Now())
	if err != nil || len(res.Removed) != 1 {
		t.Fatalf("prune of the moved tag: %+v, %v", res, err)
	}
	for _, l := range imgTwo.Layers {
		if _, err := os.Stat(l); err != nil {
			t.Errorf("a layer of the digest a container runs was removed: %v", err)
		}
	}
	// Once nothing runs it, the next collection takes its content.
	if _, err := s.collect(nil); err != nil {
		t.Fatal(err)
	}
	if got := dirEntries(t, s.layerDir()); len(got) != 0 {
		t.Errorf("layers left with nothing recorded or running: %q", got)
	}
	if got := dirEntries(t, s.blobDir()); len(got) != 0 {
		t.Errorf("blobs left with nothing recorded or running: %q", got)
	}
}

func TestSizeCountsStore(t *testing.T) {
	testutil.RequireRoot(t)
	s := tmpfsStore(t, 8)
	before, _ := s.Size()
	data := make([]byte, 1<<20)
	if err := os.WriteFile(filepath.Join(s.blobDir(), strings.Repeat("0", 64)), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(s.blobDir(), strings.Repeat("0", 64)), filepath.Join(s.tmpDir(), "link")); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Size()
	if d := after - before; d < 1<<20 || d > 1<<20+64<<10 {
		t.Errorf("Size grew by %d for one 1 MiB file linked twice", d)
	}
}
