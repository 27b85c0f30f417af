package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/internal/testutil/registry"
)

// countingStore is the real image store, counting the imports asked of it.
type countingStore struct {
	*image.Store
	mu    sync.Mutex
	calls []string
}

func (c *countingStore) Import(ctx context.Context, src, name string) ([]*image.Image, error) {
	c.mu.Lock()
	c.calls = append(c.calls, src)
	c.mu.Unlock()
	return c.Store.Import(ctx, src, name)
}

func (c *countingStore) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

func openTestStore(t *testing.T) *image.Store {
	t.Helper()
	s, err := image.Open(image.Options{Root: filepath.Join(t.TempDir(), "images"), RegistryConfig: filepath.Join(t.TempDir(), "none.json")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// seedLayout writes an OCI layout of a busybox image named ref.
func seedLayout(t *testing.T, ref string) string {
	t.Helper()
	img := registry.OCI(registry.NewImage(t, v1.Config{Cmd: []string{"/bin/sh"}}, registry.BusyboxLayer(t)))
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{image.AnnotationRefName: ref})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// seedArchive is an oci-archive of a busybox image named ref, made by
// another store's Export, and the image's manifest digest.
func seedArchive(t *testing.T, ref string) (string, string) {
	t.Helper()
	src := openTestStore(t)
	if _, err := src.Import(context.Background(), seedLayout(t, ref), ""); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "seed.oci.tar")
	img, err := src.ExportFile(context.Background(), ref, file)
	if err != nil {
		t.Fatal(err)
	}
	return file, img.Digest
}

func fileDigest(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

type importEnv struct {
	t       *testing.T
	dir     string
	state   string
	store   *countingStore
	changes chan struct{}
	clock   time.Time
}

func newImportEnv(t *testing.T) *importEnv {
	t.Helper()
	testutil.RequireRoot(t) // unpacking chowns
	base := t.TempDir()
	return &importEnv{t: t, dir: filepath.Join(base, "import"), state: filepath.Join(base, "imports.json"),
		store: &countingStore{Store: openTestStore(t)}, changes: make(chan struct{}, 100), clock: time.Now()}
}

// open makes an importDir over the env's directory and records, on the
// env's clock.
func (e *importEnv) open(strict bool) *importDir {
	d := newImportDir(e.dir, e.state, e.store, strict, time.Minute, slog.New(slog.NewTextHandler(tWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		func() {
			select {
			case e.changes <- struct{}{}:
			default:
			}
		})
	d.now = func() time.Time { return e.clock }
	return d
}

// tWriter logs to the test (seen when it fails or with -v).
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (e *importEnv) write(name string, data []byte, mode os.FileMode) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func reportOf(d *importDir, path string) (ImportReport, bool) {
	for _, r := range d.Report() {
		if r.Path == path {
			return r, true
		}
	}
	return ImportReport{}, false
}

// An archive renamed into the directory is imported at the first scan,
// recorded by its content digest; the same content again, under any
// name, and a new importDir over the same records import nothing.
func TestImportDirImportsEachContentOnce(t *testing.T) {
	e := newImportEnv(t)
	ctx := context.Background()
	archive, manifestDigest := seedArchive(t, "example.local/x:1")
	d := e.open(true)
	d.scan(ctx) // creates the directory
	fi, err := os.Stat(e.dir)
	if err != nil || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
		t.Fatalf("import directory: %v %v", fi, err)
	}
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	tmp := e.write(".x.tar.partial", data, 0o600)
	p := filepath.Join(e.dir, "x.tar")
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if d.scan(ctx) {
		t.Error("a file renamed into place is pending")
	}
	r, ok := reportOf(d, p)
	if !ok || r.Error != "" || r.Digest != fileDigest(t, p) || !slices.Equal(r.Images, []string{"example.local/x:1"}) || r.Imported.IsZero() {
		t.Fatalf("report %+v (%v), want x.tar imported as example.local/x:1", d.Report(), ok)
	}
	img, err := e.store.Get("example.local/x:1")
	if err != nil || img.Digest != manifestDigest {
		t.Fatalf("store: %v %v, want digest %s", img, err, manifestDigest)
	}

	e.write("copy.tar", data, 0o600)
	d.scan(ctx)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	e.write("x.tar", data, 0o600)
	d.scan(ctx)
	again := e.open(true)
	again.scan(ctx)
	if n := e.store.count(); n != 1 {
		t.Errorf("%d imports of one content, want 1: %v", n, e.store.calls)
	}
	if r, ok := reportOf(again, p); !ok || r.Digest != fileDigest(t, p) {
		t.Errorf("after a restart the report lacks the import of the file still there: %+v", again.Report())
	}
}

// A file being written in place is not read until its writer closes it.
func TestImportDirWaitsForTheWriter(t *testing.T) {
	e := newImportEnv(t)
	ctx := context.Background()
	archive, _ := seedArchive(t, "example.local/slow:1")
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	d := e.open(true)
	d.scan(ctx)
	p := filepath.Join(e.dir, "slow.tar")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if !d.scan(ctx) {
			t.Error("a file open for writing is not pending")
		}
	}
	if n := e.store.count(); n != 0 {
		t.Fatalf("a half-written file was imported (%d imports)", n)
	}
	if _, err := f.Write(data[len(data)/2:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if d.scan(ctx) {
		t.Error("a closed file is still pending")
	}
	if r, ok := reportOf(d, p); !ok || r.Error != "" || !slices.Equal(r.Images, []string{"example.local/slow:1"}) {
		t.Errorf("report %+v", d.Report())
	}
	if n := e.store.count(); n != 1 {
		t.Errorf("%d imports, want 1", n)
	}
}

// A corrupt archive is recorded with its error and not tried again until
// its content changes; temp names are never looked at.
func TestImportDirFailureIsNotRetried(t *testing.T) {
	e := newImportEnv(t)
	ctx := context.Background()
	d := e.open(true)
	d.scan(ctx)
	p := e.write("bad.tar", []byte("not an archive at all"), 0o600)
	for _, n := range []string{".hidden.tar", "x.tar.tmp", "y.tar.part"} {
		e.write(n, []byte("junk"), 0o600)
	}
	d.scan(ctx)
	r, ok := reportOf(d, p)
	if !ok || r.Error == "" || r.Digest != fileDigest(t, p) {
		t.Fatalf("report %+v, want bad.tar failed", d.Report())
	}
	e.clock = e.clock.Add(time.Hour) // past any resync
	d.scan(ctx)
	e.open(true).scan(ctx)
	if n := e.store.count(); n != 1 {
		t.Fatalf("%d imports of one bad content, want 1: %v", n, e.store.calls)
	}
	if got := len(d.Report()); got != 1 {
		t.Errorf("temp names reported: %+v", d.Report())
	}
	e.write("bad.tar", []byte("still not an archive"), 0o600)
	d.scan(ctx)
	if n := e.store.count(); n != 2 {
		t.Errorf("%d imports after the content changed, want 2", n)
	}
	if r, _ := reportOf(d, p); r.Digest != fileDigest(t, p) || r.Error == "" {
		t.Errorf("report after the change: %+v", d.Report())
	}
}

// As root, what is not owned by root or is writable by group or others
// is refused with the reason, and imported once that is fixed.
func TestImportDirRefusesUntrustedFiles(t *testing.T) {
	e := newImportEnv(t)
	ctx := context.Background()
	archive, _ := seedArchive(t, "example.local/trust:1")
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	d := e.open(true)
	d.scan(ctx)
	p := e.write("w.tar", data, 0o666)
	d.scan(ctx)
	if r, _ := reportOf(d, p); !strings.Contains(r.Error, "writable by group or others") || !strings.Contains(r.Error, "--insecure-manifests") {
		t.Errorf("a world-writable file: %+v", d.Report())
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	d.scan(ctx)
	if r, _ := reportOf(d, p); !strings.Contains(r.Error, "owned by uid 1234, not root") {
		t.Errorf("a file of another user: %+v", d.Report())
	}
	if n := e.store.count(); n != 0 {
		t.Fatalf("refused files were imported (%d)", n)
	}
	// Not strict (--insecure-manifests, or not root): imported.
	e.open(false).scan(ctx)
	if n := e.store.count(); n != 1 {
		t.Errorf("%d imports without the check, want 1", n)
	}

	// The directory itself.
	if err := os.Chmod(e.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	d2 := e.open(true)
	d2.scan(ctx)
	if r, ok := reportOf(d2, e.dir); !ok || !strings.Contains(r.Error, "writable by group or others") {
		t.Errorf("a world-writable import directory: %+v", d2.Report())
	}
}

// An OCI layout directory is imported once nothing in it changed for the
// settle time, recorded by the digest of its index.json.
func TestImportDirLayoutDirectory(t *testing.T) {
	e := newImportEnv(t)
	ctx := context.Background()
	d := e.open(true)
	d.scan(ctx)
	src := seedLayout(t, "example.local/layout:1")
	p := filepath.Join(e.dir, "layout")
	if err := os.Rename(src, p); err != nil {
		if err := copyTree(src, p); err != nil {
			t.Fatal(err)
		}
	}
	e.clock = time.Now()
	if !d.scan(ctx) {
		t.Error("a layout that just changed is not pending")
	}
	if n := e.store.count(); n != 0 {
		t.Fatalf("imported before it settled (%d)", n)
	}
	e.clock = time.Now().Add(importSettle)
	if d.scan(ctx) {
		t.Error("a settled layout is pending")
	}
	r, ok := reportOf(d, p)
	if !ok || r.Error != "" || r.Digest != fileDigest(t, filepath.Join(p, "index.json")) || !slices.Equal(r.Images, []string{"example.local/layout:1"}) {
		t.Errorf("report %+v", d.Report())
	}
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if de.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o600)
	})
}

// Run imports a file written in place by a slow writer once it is whole,
// seen through events and the retries, without waiting for the resync.
func TestImportDirRunSeesSlowWriter(t *testing.T) {
	e := newImportEnv(t)
	archive, _ := seedArchive(t, "example.local/run:1")
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	d := e.open(true)
	d.now = time.Now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(e.dir); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the import directory was not created")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p := filepath.Join(e.dir, "run.tar")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data[:len(data)/2])
	time.Sleep(300 * time.Millisecond)
	if n := e.store.count(); n != 0 {
		t.Fatalf("a half-written file was imported (%d)", n)
	}
	f.Write(data[len(data)/2:])
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for {
		if r, ok := reportOf(d, p); ok && slices.Equal(r.Images, []string{"example.local/run:1"}) {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("not imported: %+v", d.Report())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := e.store.count(); n != 1 {
		t.Errorf("%d imports, want 1", n)
	}
}

// imports.json as version 1 wrote it reads back.
func TestImportsFileV1Reads(t *testing.T) {
	recs, err := readImports(filepath.Join("testdata", "imports-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []importRecord{
		{Digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111", Path: "/var/lib/reconciled/import/app.tar",
			Images: []string{"example.local/app:1"}, Imported: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)},
		{Digest: "sha256:2222222222222222222222222222222222222222222222222222222222222222", Path: "/var/lib/reconciled/import/bad.tar",
			Imported: time.Date(2025, 3, 4, 5, 6, 8, 0, time.UTC), Error: "importing /var/lib/reconciled/import/bad.tar: not a tar archive"},
	}
	if len(recs) != len(want) {
		t.Fatalf("read %+v", recs)
	}
	for i := range want {
		g, w := recs[i], want[i]
		if g.Digest != w.Digest || g.Path != w.Path || !slices.Equal(g.Images, w.Images) || !g.Imported.Equal(w.Imported) || g.Error != w.Error {
			t.Errorf("record %d: %+v, want %+v", i, g, w)
		}
	}
	// What this build writes reads back the same.
	dir := t.TempDir()
	d := newImportDir(filepath.Join(dir, "import"), filepath.Join(dir, "imports.json"), nil, false, time.Minute, slog.New(slog.DiscardHandler), nil)
	for i := range recs {
		d.records[recs[i].Digest] = &recs[i]
	}
	if err := d.saveLocked(); err != nil {
		t.Fatal(err)
	}
	again, err := readImports(filepath.Join(dir, "imports.json"))
	if err != nil || len(again) != 2 || again[1].Error != want[1].Error {
		t.Errorf("written and read back: %+v %v", again, err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "imports.json")); !bytes.Contains(data, []byte(`"version":1`)) {
		t.Errorf("imports.json: %s", data)
	}
}

// A missing image with imagePullPolicy Never names the import directory
// where there is one, and starts no pull.
func TestNeverMessageNamesTheImportDirectory(t *testing.T) {
	for _, dir := range []string{"", "/var/lib/reconciled/import"} {
		store := &fakeStore{tags: map[string]string{}, stored: map[string]string{}}
		r, _ := resolverFor(t, store)
		r.importDir = dir
		got := r.Resolve(context.Background(), imageContainer(t, "never", desired.PullNever), nil)
		mentions := strings.Contains(got.ImageWait, "into the import directory /var/lib/reconciled/import")
		if !got.ImageFailed || !strings.Contains(got.ImageWait, "reconciled image pull") || mentions != (dir != "") || store.pullCount() != 0 {
			t.Errorf("import dir %q: failed %v, wait %q, %d pulls", dir, got.ImageFailed, got.ImageWait, store.pullCount())
		}
	}
}
