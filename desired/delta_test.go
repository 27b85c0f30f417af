package desired

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// An event-driven Load that applies only the files it read again
// (nextDelta) gives the Set a full read of the directory gives, step after
// step of random edits: files written, rewritten with the same content,
// renamed into place, removed, made invalid, given a name another file
// defines, a start order, several containers, more than the limit. The
// full read (Forget, then Load) runs Next over every file and is the
// reference.
func TestLoaderDeltaMatchesFullLoad(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { deltaRun(t, seed) })
	}
}

func deltaRun(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 42))
	dir := t.TempDir()
	opts := Options{InsecureManifests: true, MaxContainers: 12}
	paths := []string{"a.yaml", "b.yaml", "c.yaml", "d.yaml", "e.yaml", "sub/f.yaml", "sub/g.yaml"}
	for i, p := range paths {
		if i%2 == 0 {
			write(t, filepath.Join(dir, p), manifest(fmt.Sprintf("c%d", i), "0"))
		}
	}
	write(t, filepath.Join(dir, "sub", ".keep.txt"), "") // sub exists from the start
	inc, full := NewLoader(dir, opts, Set{}), NewLoader(dir, opts, Set{})
	load := func(l *Loader) (Set, bool) {
		t.Helper()
		s, changed, err := l.Load()
		if err != nil {
			t.Fatal(err)
		}
		return s, changed
	}
	load(inc)
	load(full)
	content := func() string {
		name := func() string { return fmt.Sprintf("c%d", rng.IntN(40)) }
		switch r := rng.IntN(40); {
		case r == 0:
			return "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: [broken\n"
		case r <= 4:
			return strings.Replace(manifest(name(), "x"), "  root: {path: /}\n", "  root: {path: /}\n  after: [{name: "+name()+"}]\n", 1)
		case r <= 8:
			var docs []string
			for range 1 + rng.IntN(4) {
				docs = append(docs, manifest(name(), fmt.Sprint(rng.IntN(3))))
			}
			return strings.Join(docs, "---\n")
		default:
			return manifest(name(), fmt.Sprint(rng.IntN(3)))
		}
	}
	fellBack := 0
	for step := range 300 {
		var touched []string
		for range 1 + rng.IntN(2) {
			p := filepath.Join(dir, paths[rng.IntN(len(paths))])
			switch r := rng.IntN(10); {
			case r < 2:
				if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
			case r < 4:
				tmp := filepath.Join(filepath.Dir(p), ".tmp")
				write(t, tmp, content())
				if err := os.Rename(tmp, p); err != nil {
					t.Fatal(err)
				}
			case r < 5:
				if data, err := os.ReadFile(p); err == nil {
					write(t, p, string(data)) // the same bytes again
				}
			default:
				write(t, p, content())
			}
			touched = append(touched, p)
		}
		for _, p := range touched {
			inc.MarkDirty(p)
		}
		before := inc.deltas
		got, gotChanged := load(inc)
		if inc.deltas == before {
			fellBack++
		}
		full.Forget()
		want, wantChanged := load(full)
		if !got.Equal(want) || gotChanged != wantChanged {
			t.Fatalf("step %d (delta used: %v): changed %v, want %v\ngot  %s\nwant %s", step, inc.deltas > before, gotChanged, wantChanged, describeSet(got), describeSet(want))
		}
		var inError []string
		for p, f := range want.Files {
			if len(f.Errors) > 0 {
				inError = append(inError, p)
			}
		}
		var invalid []string
		for _, f := range got.Invalid() {
			invalid = append(invalid, f.Path)
		}
		slices.Sort(inError)
		slices.Sort(invalid)
		if !slices.Equal(invalid, inError) {
			t.Fatalf("step %d: Invalid() = %v, want the files in error %v", step, invalid, inError)
		}
		for n, c := range got.Containers {
			if got.Files[c.Source] == nil {
				t.Fatalf("step %d: container %s from %s, which the Set has no status for", step, n, c.Source)
			}
		}
	}
	// Both ways were taken, or the comparison proved little.
	if inc.deltas < 50 || fellBack < 20 {
		t.Fatalf("%d Loads applied the files read alone and %d fell back to Next: the steps do not exercise both", inc.deltas, fellBack)
	}
	t.Logf("%d Loads by delta, %d by Next", inc.deltas, fellBack)
}
