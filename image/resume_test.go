package image

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil/registry"
)

// cutProxy is a TCP proxy to a registry that counts the bytes it sends
// back to the client and cuts connections (closes both ends) when that
// count reaches a mark.
type cutProxy struct {
	Addr string

	sent atomic.Int64
	cuts atomic.Int64
	mu   sync.Mutex
	// cutAt is the count at which the connection then sending is cut (0:
	// never); next, when set, gives the mark after a cut (0: no more).
	cutAt int64
	next  func(sent int64) int64
	// notifyAt, when reached, closes reached (once).
	notifyAt int64
	reached  chan struct{}
	once     sync.Once

	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startCutProxy(t *testing.T, reg *registry.Registry) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}, reached: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", reg.Addr)
			if err != nil {
				t.Errorf("proxy: dialling the registry: %v", err)
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go func() {
				defer p.wg.Done()
				io.Copy(up, c)
				up.Close()
			}()
			go func() {
				defer p.wg.Done()
				p.pipe(c, up)
				c.Close()
				up.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// pipe copies the registry's bytes to the client, cutting at the mark.
func (p *cutProxy) pipe(client, up net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			p.mu.Lock()
			sent := p.sent.Load()
			cut := p.cutAt > 0 && sent+int64(n) >= p.cutAt
			if cut {
				mark := p.cutAt
				n = int(mark - sent)
				p.cutAt = 0
				if p.next != nil {
					p.cutAt = p.next(mark)
				}
			}
			p.mu.Unlock()
			w, _ := client.Write(buf[:n])
			total := p.sent.Add(int64(w))
			if p.notifyAt > 0 && total >= p.notifyAt {
				p.once.Do(func() { close(p.reached) })
			}
			if cut {
				p.cuts.Add(1)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// noiseLayers caches layers of random (incompressible) content by size:
// building one takes a while.
var noiseLayers struct {
	mu sync.Mutex
	m  map[int]v1.Layer
}

// noiseLayer is a gzip layer holding one file of size random bytes
// (seeded by size and seed, so that layers of one size may differ).
func noiseLayer(t testing.TB, size, seed int) v1.Layer {
	t.Helper()
	noiseLayers.mu.Lock()
	defer noiseLayers.mu.Unlock()
	key := size*1000 + seed
	if l, ok := noiseLayers.m[key]; ok {
		return l
	}
	var s [32]byte
	copy(s[:], strconv.Itoa(key))
	data := make([]byte, size)
	rand.NewChaCha8(s).Read(data)
	l := registry.TarLayer(t, []registry.Entry{registry.File("data/random-"+strconv.Itoa(seed), 0o644, string(data))}, registry.Gzip)
	if noiseLayers.m == nil {
		noiseLayers.m = map[int]v1.Layer{}
	}
	noiseLayers.m[key] = l
	return l
}

// bigImage pushes an image of one layer of size random bytes as repo:1
// and returns that layer's digest and compressed size.
func bigImage(t *testing.T, reg *registry.Registry, repo string, size int) (string, int64) {
	t.Helper()
	l := noiseLayer(t, size, 0)
	registry.Push(t, reg, repo+":1", registry.NewImage(t, v1.Config{Cmd: []string{"/bin/true"}}, l))
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	n, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), n
}

// hasRandomFile checks the unpacked layer holds the random file whole.
func hasRandomFile(t *testing.T, img *Image, size int) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(img.Layers[len(img.Layers)-1], "data", "random-0"))
	if err != nil || fi.Size() != int64(size) {
		t.Errorf("unpacked random file: %v, %v", fi, err)
	}
}

func TestPullResumesAfterTheConnectionIsCut(t *testing.T) {
	reg := pullTest(t)
	const size = 50 << 20
	blob, blobSize := bigImage(t, reg, "big", size)
	px := startCutProxy(t, reg)
	px.cutAt = blobSize / 2
	s := newStore(t, Options{})

	img, err := s.Pull(context.Background(), px.Addr+"/big:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	hasRandomFile(t, img, size)
	sent := px.sent.Load()
	ratio := float64(sent) / float64(blobSize)
	t.Logf("blob %s: %d bytes; the proxy sent %d bytes in all (%.3fx), cut %d time(s)", blob, blobSize, sent, ratio, px.cuts.Load())
	if px.cuts.Load() != 1 {
		t.Errorf("%d cuts, want 1", px.cuts.Load())
	}
	if ratio >= 1.6 {
		t.Errorf("the proxy sent %.2fx the blob: the fetch did not resume", ratio)
	}
	if names := dirEntries(t, s.partialDir()); len(names) != 0 {
		t.Errorf("partial files left: %v", names)
	}
}

func TestPullCompletesThroughRepeatedCuts(t *testing.T) {
	reg := pullTest(t)
	const size = 50 << 20
	blob, blobSize := bigImage(t, reg, "big", size)
	px := startCutProxy(t, reg)
	rnd := rand.New(rand.NewPCG(1, 2))
	gap := func() int64 { return 2<<20 + rnd.Int64N(6<<20) } // 2 to 8 MiB, ~5 MiB on average
	px.cutAt = gap()
	px.next = func(sent int64) int64 {
		if sent > blobSize {
			return 0
		}
		return sent + gap()
	}
	s := newStore(t, Options{})

	start := time.Now()
	img, err := s.Pull(context.Background(), px.Addr+"/big:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	hasRandomFile(t, img, size)
	// Pull verified the blob; check what is stored once more.
	if _, err := s.readBlob(mustHash(t, blob)); err != nil {
		t.Error(err)
	}
	sent := px.sent.Load()
	t.Logf("blob %d bytes; the proxy sent %d bytes (%.3fx), cut %d times; %v",
		blobSize, sent, float64(sent)/float64(blobSize), px.cuts.Load(), time.Since(start).Round(time.Millisecond))
	if px.cuts.Load() < 5 {
		t.Errorf("only %d cuts", px.cuts.Load())
	}
	if float64(sent) >= 1.6*float64(blobSize) {
		t.Errorf("the proxy sent %.2fx the blob", float64(sent)/float64(blobSize))
	}
}

func mustHash(t *testing.T, d string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(d)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPullResumesWhatAnEarlierStoreLeft(t *testing.T) {
	reg := pullTest(t)
	const size = 50 << 20
	blob, blobSize := bigImage(t, reg, "big", size)
	px := startCutProxy(t, reg)
	px.notifyAt = blobSize / 2
	ref := px.Addr + "/big:1"
	first := newStore(t, Options{})

	// The first pull is stopped half way, as a killed process would be.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-px.reached:
			cancel()
		case <-ctx.Done():
		}
	}()
	if _, err := first.Pull(ctx, ref, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	first.wait()
	h := mustHash(t, blob)
	fi, err := os.Stat(first.partialPath(h))
	if err != nil || fi.Size() == 0 || fi.Size() >= blobSize {
		t.Fatalf("partial file after the cancelled pull: %v, %v", fi, err)
	}
	if _, err := os.Stat(first.blobPath(h)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half-fetched blob stored: %v", err)
	}
	if _, err := first.Get(ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after a cancelled pull: %v", err)
	}
	firstSent := px.sent.Load()
	t.Logf("the first pull got %d of %d bytes to disk (proxy sent %d)", fi.Size(), blobSize, firstSent)

	// A new store on the same root, as the next process.
	second := newStore(t, Options{Root: first.root})
	var last Progress
	img, err := second.Pull(context.Background(), ref, func(p Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	hasRandomFile(t, img, size)
	if last.Done != last.Total {
		t.Errorf("last progress %+v", last)
	}
	sent := px.sent.Load()
	ratio := float64(sent) / float64(blobSize)
	t.Logf("blob %d bytes; the proxy sent %d bytes over both pulls (%.3fx; the second %d)", blobSize, sent, ratio, sent-firstSent)
	if ratio >= 1.6 {
		t.Errorf("the proxy sent %.2fx the blob: the second pull did not resume", ratio)
	}
	if names := dirEntries(t, second.partialDir()); len(names) != 0 {
		t.Errorf("partial files left: %v", names)
	}
}

func TestPartialLongerThanTheBlobOrWrongStartsOver(t *testing.T) {
	reg := pullTest(t)
	const size = 4 << 20
	blob, blobSize := bigImage(t, reg, "big", size)
	h := mustHash(t, blob)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"longer", make([]byte, blobSize+10)},
		{"wrong bytes", []byte(strings.Repeat("x", int(blobSize/2)))},
		{"complete but wrong", make([]byte, blobSize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, Options{})
			os.MkdirAll(s.partialDir(), 0o700)
			if err := os.WriteFile(s.partialPath(h), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			img, err := s.Pull(context.Background(), reg.Ref("big:1"), nil)
			if err != nil {
				t.Fatal(err)
			}
			hasRandomFile(t, img, size)
			if names := dirEntries(t, s.partialDir()); len(names) != 0 {
				t.Errorf("partial files left: %v", names)
			}
		})
	}
}

func TestPullRateIsCapped(t *testing.T) {
	reg := pullTest(t)
	const size = 4_000_000
	bigImage(t, reg, "rated", size)
	s := newStore(t, Options{PullRate: 2_000_000})
	start := time.Now()
	img, err := s.Pull(context.Background(), reg.Ref("rated:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	hasRandomFile(t, img, size)
	t.Logf("4 MB at 2 MB/s took %v", el.Round(time.Millisecond))
	if el < 1500*time.Millisecond {
		t.Errorf("4 MB at 2 MB/s took %v, want 1.5 s or more", el)
	}
}

func TestPullFetchesABoundedNumberOfBlobsAtOnce(t *testing.T) {
	reg := pullTest(t)
	var layers []v1.Layer
	for i := range 10 {
		layers = append(layers, registry.FileLayer(t, map[string]string{"layer" + strconv.Itoa(i): strings.Repeat("x", i+1)}))
	}
	registry.Push(t, reg, "ten:1", registry.NewImage(t, v1.Config{Cmd: []string{"/bin/true"}}, layers...))

	target, err := url.Parse("http://" + reg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	var inFlight, most, gets atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := blobDigest(r); ok {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			gets.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(150 * time.Millisecond)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	s := newStore(t, Options{PullConcurrency: 3})
	if _, err := s.Pull(context.Background(), strings.TrimPrefix(srv.URL, "http://")+"/ten:1", nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d blob GETs, at most %d at once", gets.Load(), most.Load())
	if gets.Load() != 11 {
		t.Errorf("%d blob GETs, want 11 (config and 10 layers)", gets.Load())
	}
	if most.Load() != 3 {
		t.Errorf("at most %d blob GETs at once, want 3", most.Load())
	}
}

func TestPullThatWouldNotFitIsRefused(t *testing.T) {
	reg := pullTest(t)
	const size = 20 << 20
	bigImage(t, reg, "huge", size)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8m,mode=0700"); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	s := newStore(t, Options{Root: filepath.Join(dir, "images")})

	_, err := s.Pull(context.Background(), reg.Ref("huge:1"), nil)
	var se *SpaceError
	if !errors.As(err, &se) || !errors.Is(err, ErrNoSpace) {
		t.Fatalf("pull into 8 MiB: %v, want a *SpaceError", err)
	}
	t.Log(err)
	if se.Blobs < size || se.Unpack < 2*size || se.Free > 8<<20 || se.Need <= se.Free {
		t.Errorf("sizes %+v", *se)
	}
	for _, want := range []string{strconv.FormatInt(se.Need, 10) + " bytes", strconv.FormatInt(se.Free, 10) + " bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q", want)
		}
	}
	storeIsEmpty(t, s)
	if names := dirEntries(t, s.blobDir()); len(names) != 0 {
		t.Errorf("blobs stored: %v", names)
	}
	if names, err := os.ReadDir(s.partialDir()); err == nil && len(names) != 0 {
		t.Errorf("partial files left: %v", names)
	}
}

func TestOldPartialFilesAreCleaned(t *testing.T) {
	s := newStore(t, Options{})
	if err := os.MkdirAll(s.partialDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	old, fresh, held := filepath.Join(s.partialDir(), "old"), filepath.Join(s.partialDir(), "fresh"), filepath.Join(s.partialDir(), "held")
	for _, p := range []string{old, fresh, held} {
		os.WriteFile(p, []byte("x"), 0o600)
	}
	// An hour old is not old for a partial file (a temp file would go).
	twoHours, twoDays := time.Now().Add(-2*time.Hour), time.Now().Add(-48*time.Hour)
	os.Chtimes(fresh, twoHours, twoHours)
	os.Chtimes(old, twoDays, twoDays)
	os.Chtimes(held, twoDays, twoDays)
	l, err := lockFile(held, unix.LOCK_EX)
	if err != nil {
		t.Fatal(err)
	}
	defer l.unlock()
	if _, err := Open(Options{Root: s.root}); err != nil { // Open's hour-old cleaning
		t.Fatal(err)
	}
	s.cleanPartials(time.Now())
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a partial file two days old kept: %v", err)
	}
	for _, p := range []string{fresh, held} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", filepath.Base(p), err)
		}
	}
}
