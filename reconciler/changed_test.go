package reconciler

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"reconciled.dev/reconciled/desired"
)

// The names a Loader says changed between two Sets it made one from the
// other (desired.Set.ChangedSince, which SetDesired takes instead of
// comparing the Sets) are the names changedNames finds comparing them:
// files added, rewritten with more or fewer containers, renamed to, with
// the same bytes again, removed.
func TestChangedSinceMatchesChangedNames(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	manifest := func(names ...string) string {
		var docs []string
		for _, n := range names {
			docs = append(docs, fmt.Sprintf("apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: %s}\nspec:\n  root: {path: /}\n  command: [/bin/echo, %d]\n", n, rng.IntN(3)))
		}
		return strings.Join(docs, "---\n")
	}
	put := func(p, content string) {
		t.Helper()
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
	l := desired.NewLoader(dir, desired.Options{InsecureManifests: true}, desired.Set{})
	prev, _, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	known := 0
	for step := range 200 {
		// Each file defines names of its own (no two files the same name).
		f := rng.IntN(6)
		p := filepath.Join(dir, fmt.Sprintf("f%d.yaml", f))
		switch r := rng.IntN(8); {
		case r == 0:
			os.Remove(p)
		case r == 1:
			if data, err := os.ReadFile(p); err == nil {
				put(p, string(data))
			}
		default:
			var names []string
			for i := range 1 + rng.IntN(3) {
				if rng.IntN(2) == 0 {
					names = append(names, fmt.Sprintf("c%d-%d", f, i))
				}
			}
			put(p, manifest(names...))
		}
		l.MarkDirty(p)
		next, changed, err := l.Load()
		if err != nil {
			t.Fatal(err)
		}
		if !changed {
			continue
		}
		want := slices.Sorted(maps.Keys(changedNames(prev, next)))
		if got, ok := next.ChangedSince(prev); ok {
			known++
			got = slices.Compact(slices.Sorted(slices.Values(got)))
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: ChangedSince = %v, changedNames = %v", step, got, want)
			}
		}
		if _, ok := next.ChangedSince(desired.Set{}); ok {
			t.Fatalf("step %d: ChangedSince claims to know the changes since a Set it was not made from", step)
		}
		prev = next
	}
	if known < 50 {
		t.Fatalf("ChangedSince knew the changes of only %d Loads", known)
	}
}
