package desired

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"reconciled.dev/reconciled/internal/sys"
)

// manifest returns a valid manifest for name whose command echoes arg.
func manifest(name, arg string) string {
	return fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: %s
spec:
  root: {path: /}
  command: [/bin/echo, %q]
`, name, arg)
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// A process forked meanwhile (the EMFILE test starts one) holds a copy
	// of the descriptor until it execs: the file would look open for
	// writing (a read lease refused), and the watcher would wait Debounce,
	// rightly. Forks wait while ForkLock is held for reading.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

type sets struct {
	t  testing.TB
	ch <-chan Set
}

func startWatch(t testing.TB, dir string, opts WatchOptions) *sets {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts.InsecureManifests = true
	if opts.Logger == nil && testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Debounce == 0 {
		opts.Debounce = 30 * time.Millisecond
	}
	ch, err := Watch(ctx, dir, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		for range ch {
		}
	})
	return &sets{t: t, ch: ch}
}

// next waits for the next Set.
func (s *sets) next(timeout time.Duration) Set {
	s.t.Helper()
	select {
	case set, ok := <-s.ch:
		if !ok {
			s.t.Fatal("channel closed")
		}
		return set
	case <-time.After(timeout):
		s.t.Fatalf("no Set within %v", timeout)
	}
	return Set{}
}

// until returns the first Set for which cond holds, checking each Set on
// the way with every (nil: no check).
func (s *sets) until(cond func(Set) bool, every func(Set)) Set {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			s.t.Fatal("condition not met within 5s")
		}
		set := s.next(left)
		if every != nil {
			every(set)
		}
		if cond(set) {
			return set
		}
	}
}

// none checks that nothing is delivered for d.
func (s *sets) none(d time.Duration) {
	s.t.Helper()
	select {
	case set := <-s.ch:
		s.t.Fatalf("unexpected Set delivered: %s", describeSet(set))
	case <-time.After(d):
	}
}

func describeSet(s Set) string {
	var names []string
	for n, c := range s.Containers {
		names = append(names, n+"@"+c.Manifest.Spec.Command[1])
	}
	sort.Strings(names)
	var files []string
	for p, f := range s.Files {
		files = append(files, fmt.Sprintf("%s(%d errors)", filepath.Base(p), len(f.Errors)))
	}
	sort.Strings(files)
	return fmt.Sprintf("containers %v files %v rev %q", names, files, s.Revision)
}

func arg(s Set, name string) string {
	c := s.Containers[name]
	if c == nil {
		return ""
	}
	return c.Manifest.Spec.Command[1]
}

func has(name, a string) func(Set) bool {
	return func(s Set) bool { return arg(s, name) == a }
}

func TestWatchCreateWriteRenameDelete(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	w := startWatch(t, dir, WatchOptions{})
	first := w.next(2 * time.Second)
	if arg(first, "a") != "1" || len(first.Files) != 1 {
		t.Fatalf("initial: %s", describeSet(first))
	}

	// create
	write(t, filepath.Join(dir, "b.yml"), manifest("b", "1"))
	w.until(has("b", "1"), nil)

	// write
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "2"))
	w.until(has("a", "2"), nil)

	// rename into place, from a dot-file that is never read
	tmp := filepath.Join(dir, ".a.yaml.tmp")
	write(t, tmp, manifest("a", "3"))
	if err := os.Rename(tmp, filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	s := w.until(has("a", "3"), nil)
	for p := range s.Files {
		if strings.HasPrefix(filepath.Base(p), ".") {
			t.Errorf("dot-file read: %s", p)
		}
	}

	// delete
	if err := os.Remove(filepath.Join(dir, "b.yml")); err != nil {
		t.Fatal(err)
	}
	s = w.until(func(s Set) bool { return s.Containers["b"] == nil }, nil)
	if len(s.Files) != 1 {
		t.Errorf("deleted file still listed: %s", describeSet(s))
	}

	// unchanged content: nothing delivered
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "3"))
	w.none(300 * time.Millisecond)
}

func TestWatchEditorSaves(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "web.yaml")
	write(t, file, manifest("web", "1"))
	w := startWatch(t, dir, WatchOptions{})
	w.next(2 * time.Second)

	// Editor noise alone delivers nothing.
	write(t, filepath.Join(dir, "4913"), "")
	os.Remove(filepath.Join(dir, "4913"))
	write(t, filepath.Join(dir, ".web.yaml.swp"), "swap")
	write(t, filepath.Join(dir, "web.yaml~"), "garbage: [")
	write(t, filepath.Join(dir, "notes.txt"), "garbage: [")
	if err := os.Symlink("root@host.1234", filepath.Join(dir, ".#web.yaml")); err != nil {
		t.Fatal(err)
	}
	w.none(300 * time.Millisecond)

	noGap := func(s Set) {
		if s.Containers["web"] == nil {
			t.Fatalf("a Set without web was delivered during a save: %s", describeSet(s))
		}
		for p := range s.Files {
			if filepath.Base(p) != "web.yaml" {
				t.Fatalf("non-manifest file read: %s", p)
			}
		}
	}
	// vim (backupcopy=no): probe file, move the original to a backup,
	// write the new file, remove the backup.
	for i := 2; i <= 4; i++ {
		write(t, filepath.Join(dir, "4913"), "")
		os.Remove(filepath.Join(dir, "4913"))
		if err := os.Rename(file, file+"~"); err != nil {
			t.Fatal(err)
		}
		write(t, file, manifest("web", fmt.Sprint(i)))
		os.Remove(file + "~")
		w.until(has("web", fmt.Sprint(i)), noGap)
	}
	// emacs: lock symlink, write through a temp file renamed over.
	tmp := filepath.Join(dir, "#web.yaml#")
	write(t, tmp, manifest("web", "5"))
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, ".#web.yaml"))
	w.until(has("web", "5"), noGap)
}

func TestWatchPartialWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	w := startWatch(t, dir, WatchOptions{Debounce: 100 * time.Millisecond})
	w.next(2 * time.Second)

	content := manifest("b", "1")
	f, err := os.OpenFile(filepath.Join(dir, "b.yaml"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	half := len(content) / 2
	for _, part := range []string{content[:half], content[half:]} {
		if _, err := f.WriteString(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	s := w.next(2 * time.Second)
	if arg(s, "b") != "1" || len(s.Errors()) != 0 {
		t.Fatalf("the burst was not coalesced into one read: %s %v", describeSet(s), s.Errors())
	}
}

func TestWatchMaxDelay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.yaml")
	write(t, file, manifest("a", "0"))
	w := startWatch(t, dir, WatchOptions{Debounce: 100 * time.Millisecond, MaxDelay: 300 * time.Millisecond})
	w.next(2 * time.Second)

	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; time.Since(start) < 1500*time.Millisecond; i++ {
			write(t, file, manifest("a", fmt.Sprint(i)))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	s := w.next(2 * time.Second)
	if d := time.Since(start); d > time.Second {
		t.Errorf("first Set after %v of constant writes, want about MaxDelay (300ms)", d)
	}
	if arg(s, "a") == "0" {
		t.Errorf("no new content: %s", describeSet(s))
	}
	<-done
}

func TestWatchInvalidKeepsLastGood(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.yaml")
	write(t, file, manifest("a", "1")+"---\n"+manifest("b", "1"))
	w := startWatch(t, dir, WatchOptions{})
	w.next(2 * time.Second)

	write(t, file, manifest("a", "2")+"  restart: sometimes\n---\n"+manifest("b", "2"))
	s := w.next(2 * time.Second)
	if arg(s, "a") != "1" || arg(s, "b") != "1" {
		t.Errorf("invalid file changed containers: %s", describeSet(s))
	}
	errs := s.Errors()
	if len(errs) != 1 || errs[0].Error() != `a.yaml:8: spec.restart: "sometimes" is not a restart policy (use always, on-failure or never)` {
		t.Errorf("errors: %v", errs)
	}
	write(t, file, manifest("a", "3"))
	s = w.until(has("a", "3"), nil)
	if s.Containers["b"] != nil || len(s.Errors()) != 0 {
		t.Errorf("after the fix: %s %v", describeSet(s), s.Errors())
	}
}

func TestWatchSubdirectories(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "team-a", "a.yaml"), manifest("a", "1"))
	write(t, filepath.Join(dir, ".git", "x.yaml"), manifest("x", "1"))
	w := startWatch(t, dir, WatchOptions{})
	s := w.next(2 * time.Second)
	if arg(s, "a") != "1" || s.Containers["x"] != nil {
		t.Fatalf("initial: %s", describeSet(s))
	}
	// a new subdirectory with a file in it
	write(t, filepath.Join(dir, "team-b", "b.yaml"), manifest("b", "1"))
	w.until(has("b", "1"), nil)
	// a write in the new subdirectory (it must be watched now)
	write(t, filepath.Join(dir, "team-b", "b.yaml"), manifest("b", "2"))
	w.until(has("b", "2"), nil)
	// dot-directories are ignored
	write(t, filepath.Join(dir, ".git", "y.yaml"), manifest("y", "1"))
	w.none(300 * time.Millisecond)
	// a whole subdirectory removed
	if err := os.RemoveAll(filepath.Join(dir, "team-a")); err != nil {
		t.Fatal(err)
	}
	w.until(func(s Set) bool { return s.Containers["a"] == nil }, nil)
}

// gitSync lays out a git-sync root: root/rev-<sha>/... and root/current.
type gitSync struct {
	t    testing.TB
	root string
	n    int
}

func (g *gitSync) link() string { return filepath.Join(g.root, "current") }

// publish writes a new revision holding files and swaps the link to it
// atomically (symlink to a temporary name, rename over), as git-sync does.
// It returns the revision directory.
func (g *gitSync) publish(files map[string]string) string {
	g.n++
	sha := fmt.Sprintf("%040x", g.n)
	rev := filepath.Join(g.root, "rev-"+sha)
	for name, content := range files {
		write(g.t, filepath.Join(rev, name), content)
	}
	tmp := filepath.Join(g.root, ".current.tmp")
	if err := os.Symlink("rev-"+sha, tmp); err != nil {
		g.t.Fatal(err)
	}
	if err := os.Rename(tmp, g.link()); err != nil {
		g.t.Fatal(err)
	}
	return rev
}

func revFiles(i int) map[string]string {
	return map[string]string{
		"web.yaml":    manifest("web", fmt.Sprint(i)),
		"db.yaml":     manifest("db", fmt.Sprint(i)),
		"sub/q.yaml":  manifest("queue", fmt.Sprint(i)),
		"cache.json":  `{"apiVersion": "reconciled.dev/v1", "kind": "Container", "metadata": {"name": "cache"}, "spec": {"root": {"path": "/"}, "command": ["/bin/echo", "` + fmt.Sprint(i) + `"]}}`,
		"README.md":   "not a manifest",
		".gitignore":  "",
		"sub/.hidden": "",
	}
}

func TestWatchSymlinkSwap(t *testing.T) {
	t.Parallel()
	g := &gitSync{t: t, root: t.TempDir()}
	old := g.publish(revFiles(1))
	w := startWatch(t, g.link(), WatchOptions{})
	s := w.next(2 * time.Second)
	if len(s.Containers) != 4 || arg(s, "web") != "1" || s.Revision != fmt.Sprintf("%040x", 1) {
		t.Fatalf("initial: %s", describeSet(s))
	}
	// Keys stay under the link, not its target.
	for p := range s.Files {
		if !strings.HasPrefix(p, g.link()+"/") {
			t.Errorf("file key %s is not under %s", p, g.link())
		}
	}

	complete := func(s Set) {
		if len(s.Containers) != 4 || len(s.Errors()) != 0 {
			t.Fatalf("incomplete Set delivered during a swap: %s %v", describeSet(s), s.Errors())
		}
		a := arg(s, "web")
		for _, n := range []string{"db", "queue", "cache"} {
			if arg(s, n) != a {
				t.Fatalf("a Set mixes revisions: %s", describeSet(s))
			}
		}
	}
	// Swap many times, removing each old revision right after the swap
	// (git-sync's cleanup), while the Sets are read concurrently.
	for i := 2; i <= 20; i++ {
		rev := g.publish(revFiles(i))
		if err := os.RemoveAll(old); err != nil {
			t.Fatal(err)
		}
		old = rev
		if i%5 == 0 {
			// Sets are latest-wins: a later revision may have replaced
			// the one for i already.
			s = w.until(func(s Set) bool {
				n, _ := strconv.Atoi(arg(s, "web"))
				return n >= i
			}, complete)
		}
		time.Sleep(time.Duration(i%3) * 15 * time.Millisecond)
	}
	if arg(s, "web") != "20" {
		t.Errorf("last Set: %s", describeSet(s))
	}
	if s.Revision != fmt.Sprintf("%040x", 20) {
		t.Errorf("revision %q", s.Revision)
	}
}

func TestWatchConfigMapSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	publish := func(i int) {
		ts := filepath.Join(dir, fmt.Sprintf("..2026_%02d", i))
		write(t, filepath.Join(ts, "web.yaml"), manifest("web", fmt.Sprint(i)))
		write(t, filepath.Join(ts, "db.yaml"), manifest("db", fmt.Sprint(i)))
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if i > 1 {
			os.RemoveAll(filepath.Join(dir, fmt.Sprintf("..2026_%02d", i-1)))
		}
	}
	publish(1)
	for _, n := range []string{"web.yaml", "db.yaml"} {
		if err := os.Symlink(filepath.Join("..data", n), filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	w := startWatch(t, dir, WatchOptions{})
	if s := w.next(2 * time.Second); arg(s, "web") != "1" || arg(s, "db") != "1" {
		t.Fatalf("initial: %s", describeSet(s))
	}
	for i := 2; i <= 5; i++ {
		publish(i)
		w.until(func(s Set) bool { return arg(s, "web") == fmt.Sprint(i) && arg(s, "db") == fmt.Sprint(i) }, func(s Set) {
			if len(s.Containers) != 2 {
				t.Fatalf("incomplete Set: %s", describeSet(s))
			}
		})
	}
}

func TestWatchDirectoryDeletedAndRecreated(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	dir := filepath.Join(parent, "manifests")
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	w := startWatch(t, dir, WatchOptions{MissingGrace: 500 * time.Millisecond})
	w.next(2 * time.Second)

	// Renamed away and back within the grace period: nothing happens.
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if err := os.Rename(dir+".old", dir); err != nil {
		t.Fatal(err)
	}
	w.none(400 * time.Millisecond)

	// Deleted for longer than the grace period: the empty Set.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := w.next(3 * time.Second)
	if len(s.Containers) != 0 {
		t.Errorf("after the grace: %s", describeSet(s))
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("emptied after %v, before the grace period", d)
	}
	// Re-created: picked up through the watch on the parent.
	write(t, filepath.Join(dir, "b.yaml"), manifest("b", "1"))
	w.until(has("b", "1"), nil)
	write(t, filepath.Join(dir, "b.yaml"), manifest("b", "2"))
	w.until(has("b", "2"), nil)
}

func TestWatchMissingAtStart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "later")
	w := startWatch(t, dir, WatchOptions{MissingGrace: -1})
	w.none(300 * time.Millisecond)
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	w.until(has("a", "1"), nil)
}

func TestWatchOverflowRescans(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	var drop atomic.Bool
	opts := WatchOptions{dropEvents: &drop, inject: make(chan error)}
	w := startWatch(t, dir, opts)
	w.next(2 * time.Second)

	drop.Store(true) // as if the kernel lost the events
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "2"))
	write(t, filepath.Join(dir, "sub", "b.yaml"), manifest("b", "1"))
	w.none(200 * time.Millisecond)
	drop.Store(false)
	opts.inject <- fmt.Errorf("read: %w", fsnotify.ErrEventOverflow)
	s := w.next(2 * time.Second)
	if arg(s, "a") != "2" || arg(s, "b") != "1" {
		t.Fatalf("after overflow: %s", describeSet(s))
	}
	// The new subdirectory is watched after the rescan.
	write(t, filepath.Join(dir, "sub", "b.yaml"), manifest("b", "2"))
	w.until(has("b", "2"), nil)
}

func TestWatchResync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	var drop atomic.Bool
	w := startWatch(t, dir, WatchOptions{Resync: 100 * time.Millisecond, dropEvents: &drop})
	w.next(2 * time.Second)
	// Several resyncs with nothing changed deliver nothing.
	w.none(500 * time.Millisecond)
	// A lost event is caught by the next resync. (Written atomically: a
	// resync that falls between the truncation and the write of a plain
	// write would see an empty file, which the debounce prevents when events
	// are not lost.)
	drop.Store(true)
	write(t, filepath.Join(dir, ".a.tmp"), manifest("a", "2"))
	if err := os.Rename(filepath.Join(dir, ".a.tmp"), filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	s := w.next(2 * time.Second)
	if arg(s, "a") != "2" {
		t.Fatalf("after resync: %s", describeSet(s))
	}
}

func TestWatchLatestWins(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.yaml")
	write(t, file, manifest("a", "0"))
	w := startWatch(t, dir, WatchOptions{Debounce: 10 * time.Millisecond})
	// Do not read while several changes are delivered.
	for i := 1; i <= 5; i++ {
		write(t, file, manifest("a", fmt.Sprint(i)))
		time.Sleep(60 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if s := w.next(time.Second); arg(s, "a") != "5" {
		t.Errorf("a stale Set was kept: %s", describeSet(s))
	}
	w.none(200 * time.Millisecond)
}

// A file renamed into place is whole when it appears: it is read after
// Settle, not Debounce. A file written in place still waits for Debounce
// (here an hour, so it must not be read during the test).
func TestWatchRenameIntoPlaceSkipsDebounce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	w := startWatch(t, dir, WatchOptions{Debounce: time.Hour, MaxDelay: time.Hour})
	w.next(2 * time.Second)

	tmp := filepath.Join(dir, ".b.yaml.tmp")
	write(t, tmp, manifest("b", "1"))
	if err := os.Rename(tmp, filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	if s := w.next(5 * time.Second); arg(s, "b") != "1" {
		t.Fatalf("renamed file not applied: %s", describeSet(s))
	}

	// A file written in place waits for Debounce while its writer holds
	// it open. (Once written and closed it may be read at once, like a
	// renamed one: when the watcher is slow to see its Create, the file is
	// complete and unopened by then, so which it is depends on timing.)
	f, err := os.OpenFile(filepath.Join(dir, "c.yaml"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(manifest("c", "1")); err != nil {
		t.Fatal(err)
	}
	w.none(300 * time.Millisecond)
}

// A file created empty and written a moment later (cat > f, a slow cp) is
// not read in its empty state by the fast path.
func TestWatchCreatedEmptyWaitsForWriter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := startWatch(t, dir, WatchOptions{Debounce: 200 * time.Millisecond, Settle: time.Millisecond})
	w.next(2 * time.Second)

	f, err := os.OpenFile(filepath.Join(dir, "b.yaml"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // well past Settle, within Debounce
	if _, err := f.WriteString(manifest("b", "1")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if s := w.next(5 * time.Second); arg(s, "b") != "1" {
		t.Fatalf("first Set is not the written file: %s", describeSet(s))
	}
}

// A rename that starts a burst (no read in the last Settle, here 2s) is
// read at once, not after Settle.
func TestWatchRenameReadAtOnce(t *testing.T) {
	t.Parallel()
	const settle = 2 * time.Second
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	w := startWatch(t, dir, WatchOptions{Debounce: time.Hour, Settle: settle, MaxDelay: time.Hour})
	w.next(2 * time.Second)
	time.Sleep(settle + 100*time.Millisecond)

	tmp := filepath.Join(dir, ".b.yaml.tmp")
	write(t, tmp, manifest("b", "1"))
	if err := os.Rename(tmp, filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := w.next(5 * time.Second)
	if arg(s, "b") != "1" {
		t.Fatalf("renamed file not applied: %s", describeSet(s))
	}
	if d := time.Since(start); d >= settle {
		t.Errorf("read after %v: it waited for Settle (%v)", d, settle)
	}
}

// A file renamed into place while a process still has it open for writing
// may not be whole: it is not read at once, nor after Settle, but after
// Debounce, as a file written in place is (its writes may still come).
func TestWatchRenamedOpenForWritingWaits(t *testing.T) {
	t.Parallel()
	const settle, debounce = 100 * time.Millisecond, time.Second
	dir := t.TempDir()
	w := startWatch(t, dir, WatchOptions{Debounce: debounce, Settle: settle, MaxDelay: time.Hour})
	w.next(2 * time.Second)
	time.Sleep(settle + 100*time.Millisecond) // the rename starts a burst

	tmp := filepath.Join(dir, ".b.yaml.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(manifest("b", "1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	w.none(3 * settle)
	if s := w.next(5 * time.Second); arg(s, "b") != "1" {
		t.Fatalf("after Debounce: %s", describeSet(s))
	}
}

// A file rewritten in place with the same size within the clock tick of
// its last read keeps its stat; its Write event gets it read all the same.
func TestWatchSameSizeRewriteInPlace(t *testing.T) {
	dir := coarseDir(t)
	file := filepath.Join(dir, "a.yaml")
	write(t, file, manifest("a", "w0"))
	w := startWatch(t, dir, WatchOptions{Debounce: 5 * time.Millisecond})
	w.next(2 * time.Second)

	kept := 0
	for i := 1; i <= 100 && kept < 3; i++ {
		// Renamed into place: read at once, so that the read, and the
		// rewrite below, fall within a tick of it.
		time.Sleep(3 * time.Millisecond) // past Settle since the last read
		tmp := filepath.Join(dir, ".a.tmp")
		write(t, tmp, manifest("a", fmt.Sprintf("r%d", i%10)))
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
		w.until(has("a", fmt.Sprintf("r%d", i%10)), nil)
		before := stampAt(t, file)
		write(t, file, manifest("a", fmt.Sprintf("w%d", i%10)))
		if stampAt(t, file) == before {
			kept++
		}
		w.until(has("a", fmt.Sprintf("w%d", i%10)), nil)
	}
	t.Logf("the stat was kept by %d rewrites", kept)
	if kept == 0 {
		t.Fatal("no rewrite kept the file's stat: the case this test is for never happened")
	}
}

// A resync finds nothing changed and reads nothing; a file rewritten in
// place whose events were lost is read by the next resync all the same.
func TestWatchResyncSkipsUnchangedSeesLostWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.yaml")
	write(t, file, manifest("a", "1"))
	var drop atomic.Bool
	var loads atomic.Int64
	w := startWatch(t, dir, WatchOptions{Resync: 50 * time.Millisecond, dropEvents: &drop, loads: &loads})
	w.next(2 * time.Second)

	time.Sleep(sys.RacyWindow + 200*time.Millisecond) // until the timestamps are trusted
	n := loads.Load()
	w.none(300 * time.Millisecond)
	if d := loads.Load() - n; d != 0 {
		t.Errorf("%d resyncs read an unchanged directory", d)
	}
	drop.Store(true)
	write(t, file, manifest("a", "2"))
	w.until(has("a", "2"), nil)
}

// A file rewritten with the same size within the tick of its last read
// keeps its stat; when its events are lost, the resync still reads it: a
// resync trusts no stamp of a file.
func TestWatchResyncRereadsSameStat(t *testing.T) {
	root := coarseDir(t)
	for try := 0; try < 20; try++ {
		dir := filepath.Join(root, fmt.Sprint(try))
		file := filepath.Join(dir, "a.yaml")
		write(t, file, manifest("a", "1"))
		before := stampAt(t, file)
		var drop atomic.Bool
		drop.Store(true)
		w := startWatch(t, dir, WatchOptions{Resync: 50 * time.Millisecond, dropEvents: &drop})
		// Watch has read the directory and delivered the first Set when it
		// returns: take it before the rewrite, which a resync may read at
		// once. The rewrite is in place without a truncation (the same
		// size), so that a resync never reads the file empty.
		if s := w.next(2 * time.Second); arg(s, "a") != "1" {
			t.Fatalf("first: %s", describeSet(s))
		}
		rewriteInPlace(t, file, manifest("a", "2"))
		kept := stampAt(t, file) == before
		w.until(has("a", "2"), nil)
		if kept {
			return
		}
	}
	t.Fatal("no rewrite kept the file's stat: the case this test is for never happened")
}

// rewriteInPlace writes content over path from its start, without
// truncating it first (content is the file's size).
func rewriteInPlace(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// A file created in a new directory after the read that listed it but
// before its watch was in place has no event: the watcher reads again
// once the watch is there, so it is applied without waiting for Resync.
func TestWatchNewDirectoryReadAgainWhenWatched(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), manifest("a", "1"))
	sub := filepath.Join(dir, "team")
	wrote := false
	w := startWatch(t, dir, WatchOptions{Resync: time.Hour, afterLoad: func(l *Loader) {
		if !wrote && slices.Contains(l.Dirs(), sub) {
			wrote = true // between the listing and the watch
			write(t, filepath.Join(sub, "late.yaml"), manifest("late", "1"))
		}
	}})
	w.next(2 * time.Second)
	staging := filepath.Join(t.TempDir(), "team")
	write(t, filepath.Join(staging, "early.yaml"), manifest("early", "1"))
	if err := os.Rename(staging, sub); err != nil {
		t.Fatal(err)
	}
	s := w.until(has("late", "1"), nil)
	if arg(s, "early") != "1" || arg(s, "a") != "1" {
		t.Fatalf("after the new directory: %s", describeSet(s))
	}
}
