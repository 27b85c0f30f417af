package image

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/internal/testutil/registry"
)

// testLog is an io.Writer to t.Log that goes quiet once the test ends
// (work a cancelled pull left running may still log).
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// newStore opens a store under a fresh temp dir, with no registry
// credentials unless opts says otherwise. Its running work is waited for
// before the temp dir goes.
func newStore(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Root == "" {
		opts.Root = filepath.Join(t.TempDir(), "images")
	}
	if opts.RegistryConfig == "" {
		opts.RegistryConfig = filepath.Join(t.TempDir(), "no-such-config.json")
	}
	w := &testLog{t: t}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.wait()
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return s
}

// pullTest is what most pull tests need: root (unpacking chowns) and a
// registry.
func pullTest(t *testing.T, opts ...registry.Option) *registry.Registry {
	t.Helper()
	testutil.RequireRoot(t)
	return registry.Start(t, opts...)
}

// hasBusybox checks that one of the layer dirs holds /bin/busybox as a
// regular executable file.
func hasBusybox(t testing.TB, img *Image) {
	t.Helper()
	for _, l := range img.Layers {
		if fi, err := os.Lstat(filepath.Join(l, "bin", "busybox")); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return
		}
	}
	t.Errorf("no layer of %s holds an executable /bin/busybox: %v", img.Ref, img.Layers)
}

// dirEntries lists a directory's names.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// proxy is a reverse proxy to a registry on 127.0.0.1 that counts blob
// GETs and can slow them down.
type proxy struct {
	Addr string

	mu         sync.Mutex
	blobGets   map[string]int // digest -> GETs
	slow       atomic.Bool    // trickle blob bodies
	slowDigest string         // only this blob, when set
	started    chan string    // gets the digest of the first slowed blob that sent bytes
	startOnce  sync.Once
}

func startProxy(t testing.TB, reg *registry.Registry) *proxy {
	t.Helper()
	target, err := url.Parse("http://" + reg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{blobGets: map[string]int{}, started: make(chan string, 1)}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if d, ok := blobDigest(resp.Request); ok && p.slow.Load() && (p.slowDigest == "" || p.slowDigest == d) {
			resp.Body = &slowBody{ReadCloser: resp.Body, p: p, digest: d}
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, ok := blobDigest(r); ok {
			p.mu.Lock()
			p.blobGets[d]++
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.Addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func blobDigest(r *http.Request) (string, bool) {
	if r.Method != http.MethodGet {
		return "", false
	}
	i := strings.Index(r.URL.Path, "/blobs/")
	if i < 0 {
		return "", false
	}
	return r.URL.Path[i+len("/blobs/"):], true
}

func (p *proxy) gets(digest string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blobGets[digest]
}

// slowBody hands out 16 KiB every 20 ms.
type slowBody struct {
	io.ReadCloser
	p      *proxy
	digest string
}

func (b *slowBody) Read(buf []byte) (int, error) {
	if len(buf) > 16<<10 {
		buf = buf[:16<<10]
	}
	time.Sleep(20 * time.Millisecond)
	n, err := b.ReadCloser.Read(buf)
	if n > 0 {
		b.p.startOnce.Do(func() { b.p.started <- b.digest })
	}
	return n, err
}
