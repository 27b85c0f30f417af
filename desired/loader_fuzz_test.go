package desired

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzIncrementalLoader: after every step of a sequence of edits to a
// manifests directory, a Loader that has seen every step (and been told,
// by MarkDirty, the paths the kernel's events would name through the
// watches it keeps) gives the Set and directories a fresh Loader gives
// from the same last Set by a full walk. The edits: a file created,
// overwritten (in place, the same size or not; renamed into place),
// renamed, removed; a file made a symlink (to a file outside every watched
// directory, or ConfigMap-style through a ..data link that is then
// swapped) or a hard link of another; a symlinked file's target written
// (no event in a watched directory); invalid, empty and duplicate content;
// a directory, a FIFO named like a manifest; chmods (strict mode refuses
// files writable by others); a subdirectory removed whole; Forget, as the
// watcher's resync and an overflow do.
//
// Each step is three bytes: the operation, a slot and an argument (see
// loaderFuzz.step). strict runs with the ownership and mode check (as if
// root when the test is not).
func FuzzIncrementalLoader(f *testing.F) {
	// Each step: op slot arg (see loaderFuzz.step).
	f.Add(false, []byte{
		0, 0, 0, 0, 1, 1, 0, 0, 3, // a.yaml, b.yml written; a.yaml again, the same size
		1, 2, 7, 2, 0, 3, 3, 1, 0, // c.json renamed into place; a.yaml renamed over sub/d.yaml; b.yml removed
		0, 4, 6, 0, 4, 9, 0, 4, 12, // sub/e.yaml not YAML, invalid, empty
		0, 5, 15, 0, 5, 1, // sub/deep/f.yaml with two documents, then one
	})
	f.Add(false, []byte{
		4, 6, 0, 5, 0, 6, // l.yaml -> .store/s0.yaml; the target written (no event)
		4, 6, 2, 5, 1, 1, 6, 0, 0, 5, 2, 0, // l.yaml -> ..data/s0.yaml; .v1 written; ..data swapped; .v2 written
		4, 0, 3, 3, 6, 0, 6, 0, 0, // a.yaml -> ..data/s1.yaml; l.yaml removed; swapped back
	})
	f.Add(false, []byte{
		0, 0, 0, 8, 0, 1, 0, 0, 3, 0, 1, 6, // b.yml a hard link of a.yaml, written through each name
		2, 0, 2, 3, 1, 0, 0, 2, 4, // a.yaml renamed over c.json; b.yml removed; c.json written
		7, 7, 0, 3, 7, 0, 0, 7, 1, // x.yaml a directory, removed, a file
		9, 3, 0, 0, 3, 0, 11, 0, 0, 0, 4, 0, // a FIFO; written over; sub removed whole; written again
	})
	f.Add(true, []byte{
		0, 0, 0, 10, 0, 1, 10, 0, 0, 0, 3, 1, // a.yaml writable by others, then not
		12, 0, 1, 0, 4, 0, 12, 0, 0, // sub writable by others, then not
		4, 6, 0, 13, 0, 0, 0, 6, 3, // a symlink; Forget; written over
		14, 0, 0, 0, 1, 2, 14, 0, 0, // loads without marks
	})
	f.Add(true, []byte{
		4, 6, 2, 6, 0, 0, 10, 6, 1, 5, 2, 2, 6, 0, 0, // ConfigMap swaps in strict mode
		8, 0, 4, 0, 0, 9, 10, 4, 1, // hard links
	})
	f.Fuzz(func(t *testing.T, strict bool, ops []byte) {
		if len(ops) > 3*48 {
			ops = ops[:3*48]
		}
		z := newLoaderFuzz(t, strict)
		z.check("start")
		for i := 0; i+3 <= len(ops); i += 3 {
			what := z.step(ops[i], ops[i+1], ops[i+2])
			z.check(fmt.Sprintf("step %d (%s)", i/3, what))
		}
	})
}

// loaderFuzz is one run of FuzzIncrementalLoader: a manifests directory
// and the incremental Loader under test.
type loaderFuzz struct {
	t    *testing.T
	root string // the manifests directory (a real path)
	opts Options
	inc  *Loader
	log  []string
}

// fuzzSlots are the manifest paths the edits use, relative to root; the
// link targets live in dot-directories, which are neither walked nor
// watched.
var fuzzSlots = []string{"a.yaml", "b.yml", "c.json", "sub/d.yaml", "sub/e.yaml", "sub/deep/f.yaml", "l.yaml", "x.yaml"}

func newLoaderFuzz(t *testing.T, strict bool) *loaderFuzz {
	tmp, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	z := &loaderFuzz{t: t, root: filepath.Join(tmp, "m"), opts: Options{InsecureManifests: !strict}}
	if strict && os.Geteuid() != 0 {
		z.opts.euid = func() int { return 0 } // every file refused: still the same for both
	}
	write(t, z.path(0), fuzzContent(0))
	write(t, z.path(3), fuzzContent(1))
	for _, s := range []string{".store/s0.yaml", ".store/s1.yaml", ".v1/s0.yaml", ".v1/s1.yaml", ".v2/s0.yaml", ".v2/s1.yaml"} {
		write(t, filepath.Join(z.root, s), fuzzContent(len(s)))
	}
	if err := os.Symlink(".v1", filepath.Join(z.root, "..data")); err != nil {
		t.Fatal(err)
	}
	z.inc = NewLoader(z.root, z.opts, Set{})
	return z
}

func (z *loaderFuzz) path(slot byte) string {
	return filepath.Join(z.root, fuzzSlots[int(slot)%len(fuzzSlots)])
}

// fuzzContent is manifest content: valid (two of the same size), not
// YAML, invalid by the schema, empty, two documents; the names overlap,
// so files also define the same container twice.
func fuzzContent(arg int) string {
	names := []string{"web", "db", "cache"}
	n := names[arg%3]
	switch (arg / 3) % 6 {
	case 0:
		return manifest(n, "1")
	case 1:
		return manifest(n, "2")
	case 2:
		return "garbage: [\n"
	case 3:
		return manifest(n, "1") + "  restart: sometimes\n"
	case 4:
		return ""
	default:
		return manifest(n, "1") + "---\n" + manifest(names[(arg+1)%3], "3")
	}
}

// mark tells the Loader what the watcher's events would name.
func (z *loaderFuzz) mark(paths ...string) {
	for _, p := range paths {
		z.inc.MarkDirty(p)
	}
}

// mkdirs creates the directories missing on the way to the file p under
// root, marking each (its parent's watch names it).
func (z *loaderFuzz) mkdirs(p string) {
	var missing []string
	for d := filepath.Dir(p); d != z.root && strings.HasPrefix(d, z.root); d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	for _, d := range slices.Backward(missing) {
		if err := os.Mkdir(d, 0o755); err != nil {
			return // a file in the way: the step fails, as it may
		}
		z.mark(d)
	}
}

// write writes content to p in place, as os.WriteFile does, except that
// a FIFO there (an earlier step's) fails at once instead of waiting for a
// reader.
func (z *loaderFuzz) write(p, content string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NONBLOCK, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	return errors.Join(err, f.Close())
}

// step applies one edit and says what it was. Errors of the edit itself
// (a rename of a file that is not there) are part of the sequence.
func (z *loaderFuzz) step(op, slot, arg byte) string {
	p, q := z.path(slot), z.path(arg)
	rel := func(p string) string { r, _ := filepath.Rel(z.root, p); return r }
	var what string
	switch op % 15 {
	case 0: // written in place (truncated, then written)
		z.mkdirs(p)
		z.write(p, fuzzContent(int(arg)))
		z.mark(p)
		what = fmt.Sprintf("write %s %d", rel(p), arg)
	case 1: // written to a dot-file and renamed into place
		z.mkdirs(p)
		tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp")
		if z.write(tmp, fuzzContent(int(arg))) == nil {
			_ = os.Rename(tmp, p)
		}
		z.mark(p)
		what = fmt.Sprintf("rename-into %s %d", rel(p), arg)
	case 2: // renamed over another slot
		z.mkdirs(q)
		_ = os.Rename(p, q)
		z.mark(p, q)
		what = fmt.Sprintf("rename %s %s", rel(p), rel(q))
	case 3: // removed (a directory with what is in it)
		_ = os.RemoveAll(p)
		z.mark(p)
		what = "remove " + rel(p)
	case 4: // made a symlink, swapped into place
		z.mkdirs(p)
		target := filepath.Join(z.root, ".store", fmt.Sprintf("s%d.yaml", arg%2))
		if arg%4 >= 2 { // ConfigMap style, relative
			r, _ := filepath.Rel(filepath.Dir(p), filepath.Join(z.root, "..data", fmt.Sprintf("s%d.yaml", arg%2)))
			target = r
		}
		tmp := filepath.Join(filepath.Dir(p), ".link.tmp")
		_ = os.Remove(tmp)
		if os.Symlink(target, tmp) == nil {
			_ = os.Rename(tmp, p)
		}
		z.mark(p)
		what = fmt.Sprintf("symlink %s -> %s", rel(p), target)
	case 5: // a link target written: no event in a watched directory
		dirs := []string{".store", ".v1", ".v2"}
		t := filepath.Join(z.root, dirs[int(slot)%3], fmt.Sprintf("s%d.yaml", arg%2))
		z.write(t, fuzzContent(int(arg/2)))
		what = fmt.Sprintf("write target %s %d", rel(t), arg/2)
	case 6: // ..data swapped to the other version
		link := filepath.Join(z.root, "..data")
		next := ".v1"
		if cur, _ := os.Readlink(link); cur == ".v1" {
			next = ".v2"
		}
		tmp := filepath.Join(z.root, "..data_tmp")
		_ = os.Remove(tmp)
		if os.Symlink(next, tmp) == nil {
			_ = os.Rename(tmp, link)
		}
		z.mark(link)
		what = "swap ..data -> " + next
	case 7: // a directory named like a manifest, with one inside
		_ = os.Mkdir(p, 0o755)
		z.mark(p)
		z.write(filepath.Join(p, "in.yaml"), fuzzContent(int(arg)))
		what = "mkdir " + rel(p)
	case 8: // a hard link of another slot (the link count of p changes too)
		z.mkdirs(q)
		_ = os.Remove(q)
		_ = os.Link(p, q)
		z.mark(p, q)
		what = fmt.Sprintf("link %s %s", rel(p), rel(q))
	case 9: // a FIFO
		z.mkdirs(p)
		_ = unix.Mkfifo(p, 0o644)
		z.mark(p)
		what = "mkfifo " + rel(p)
	case 10: // chmod: writable by others or not
		mode := os.FileMode(0o644)
		if arg%2 == 1 {
			mode = 0o666
		}
		_ = os.Chmod(p, mode)
		z.mark(p)
		what = fmt.Sprintf("chmod %s %o", rel(p), mode)
	case 11: // a subdirectory removed whole
		d := filepath.Join(z.root, "sub")
		_ = os.RemoveAll(d)
		z.mark(d)
		what = "remove sub"
	case 12: // chmod of a subdirectory
		d := filepath.Join(z.root, "sub")
		mode := os.FileMode(0o755)
		if arg%2 == 1 {
			mode = 0o777
		}
		_ = os.Chmod(d, mode)
		z.mark(d)
		what = fmt.Sprintf("chmod sub %o", mode)
	case 13: // lost events: the watcher Forgets
		z.inc.Forget()
		what = "forget"
	default: // a load with nothing marked (a resync that saw a stat change)
		what = "load"
	}
	z.log = append(z.log, what)
	return what
}

// check loads incrementally and compares with a fresh Loader's full walk
// from the same last Set.
func (z *loaderFuzz) check(when string) {
	t := z.t
	t.Helper()
	prev := z.inc.Last()
	got, _, gotErr := z.inc.Load()
	full := NewLoader(z.root, z.opts, prev)
	want, _, wantErr := full.Load()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s\nsteps:\n  %s", when, fmt.Sprintf(format, args...), strings.Join(z.log, "\n  "))
	}
	if (gotErr == nil) != (wantErr == nil) {
		fail("incremental Load error %v, full Load error %v", gotErr, wantErr)
	}
	if gotErr != nil {
		return
	}
	if !got.Equal(want) {
		fail("incremental Load\n  %s %v\nfull Load\n  %s %v", describeFuzzSet(got), got.Errors(), describeFuzzSet(want), want.Errors())
	}
	gd, wd := slices.Sorted(slices.Values(z.inc.Dirs())), slices.Sorted(slices.Values(full.Dirs()))
	if !slices.Equal(gd, wd) {
		fail("incremental Load's directories %q, full Load's %q", gd, wd)
	}
}

// describeFuzzSet is describeSet with each file's content hash and each
// container's source.
func describeFuzzSet(s Set) string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(s.Containers)) {
		c := s.Containers[n]
		out = append(out, fmt.Sprintf("%s@%s:%d(%.8s)", n, filepath.Base(c.Source), c.Doc, c.Hash))
	}
	for _, p := range slices.Sorted(maps.Keys(s.Files)) {
		f := s.Files[p]
		out = append(out, fmt.Sprintf("%s[%.8s %v %d errors]", filepath.Base(p), f.ContentHash, f.Containers, len(f.Errors)))
	}
	return strings.Join(out, " ")
}
