package image

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil"
)

func TestPlatformScore(t *testing.T) {
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	armv7 := v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	for _, tc := range []struct {
		want v1.Platform
		have *v1.Platform
		ok   bool
	}{
		{amd64, &v1.Platform{OS: "linux", Architecture: "amd64"}, true},
		{amd64, &v1.Platform{OS: "windows", Architecture: "amd64"}, false},
		{amd64, &v1.Platform{OS: "linux", Architecture: "arm64"}, false},
		{amd64, &v1.Platform{OS: "unknown", Architecture: "unknown"}, false}, // attestations
		{amd64, nil, false},
		{arm64, &v1.Platform{OS: "linux", Architecture: "arm64"}, true},
		{arm64, &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, true},
		{armv7, &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, true},
		{armv7, &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v8"}, false},
		{v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, false},
	} {
		if got := platformScore(tc.want, tc.have) > 0; got != tc.ok {
			t.Errorf("want %v, have %v: fits %v", tc.want, tc.have, got)
		}
	}
	// An exact variant beats none, which beats an older one.
	v6 := &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}
	none := &v1.Platform{OS: "linux", Architecture: "arm"}
	v7 := &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	if !(platformScore(armv7, v7) > platformScore(armv7, none) && platformScore(armv7, none) > platformScore(armv7, v6)) {
		t.Error("variant preference wrong")
	}
	if armVariant("7") != "v7" || armVariant("6TEJ") != "v6" || armVariant("8") != "v8" {
		t.Error("armVariant")
	}
}

func TestManifestKind(t *testing.T) {
	for _, tc := range []struct {
		ct    types.MediaType
		body  string
		index bool
		fail  bool
	}{
		{"", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, true, false},
		{"", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}`, false, false},
		{types.OCIImageIndex, `{"schemaVersion":2,"manifests":[]}`, true, false},
		{"application/vnd.oci.image.manifest.v1+json; charset=utf-8", `{"schemaVersion":2}`, false, false},
		{"application/json", `{"schemaVersion":2,"layers":[]}`, false, false},
		{types.DockerManifestSchema1Signed, `{"schemaVersion":1}`, false, true},
		{"", `not json`, false, true},
		{"text/html", `{}`, false, true},
	} {
		index, err := manifestKind(tc.ct, []byte(tc.body))
		if (err != nil) != tc.fail || (err == nil && index != tc.index) {
			t.Errorf("%s %s: index %v, %v", tc.ct, tc.body, index, err)
		}
	}
}

func TestPlainHTTPAllowed(t *testing.T) {
	insecure := []string{"reg.lan:5000", "10.1.2.3", "[fd00::1]:443"}
	for host, want := range map[string]bool{
		"localhost":      true,
		"localhost:5000": true,
		"127.0.0.1:8080": true,
		"[::1]:5000":     true,
		"127.0.0.2:5000": false,
		"reg.lan:5000":   true,
		"reg.lan:5001":   false,
		"reg.lan":        false,
		"10.1.2.3":       true,
		"10.1.2.3:81":    true,
		"10.1.2.4":       false,
		"[fd00::1]:443":  true,
		"example.com":    false,
		"docker.io":      false,
	} {
		if got := plainHTTPAllowed(host, insecure); got != want {
			t.Errorf("%s: %v, want %v", host, got, want)
		}
	}
}

type failTransport struct{ t *testing.T }

func (f failTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f.t.Errorf("request to %s was sent", req.URL)
	return nil, errors.New("not sent")
}

func TestHTTPGuardRefusesBeforeSending(t *testing.T) {
	g := httpGuard{inner: failTransport{t}, insecure: []string{"reg.lan"}}
	for _, u := range []string{"http://10.0.0.1/v2/", "http://registry.local/v2/", "http://auth.example.com/token"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if _, err := g.RoundTrip(req); !errors.Is(err, errPlainHTTP) {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// refsV1 is refs.json as version 1 writes it; later versions must read it.
const refsV1 = `{"version":1,"refs":{
"docker.io/library/busybox:latest":{"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","index":"sha256:2222222222222222222222222222222222222222222222222222222222222222","pulled":"2025-01-02T03:04:05Z","lastUsed":"2025-02-03T04:05:06Z"},
"localhost:5000/app@sha256:3333333333333333333333333333333333333333333333333333333333333333":{"digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","pulled":"2025-01-02T03:04:05Z"}}}`

func TestReadsRefsVersion1(t *testing.T) {
	s := newStore(t, Options{})
	if err := os.WriteFile(filepath.Join(s.root, "refs.json"), []byte(refsV1), 0o600); err != nil {
		t.Fatal(err)
	}
	rf, err := s.readRefs()
	if err != nil {
		t.Fatal(err)
	}
	bb := rf.Refs["docker.io/library/busybox:latest"]
	if bb.Digest != "sha256:"+strings.Repeat("1", 64) || bb.Index != "sha256:"+strings.Repeat("2", 64) ||
		!bb.Pulled.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) || !bb.LastUsed.Equal(time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)) {
		t.Errorf("busybox record %+v", bb)
	}
	app := rf.Refs["localhost:5000/app@sha256:"+strings.Repeat("3", 64)]
	if app.Digest == "" || !app.LastUsed.IsZero() {
		t.Errorf("app record %+v", app)
	}
	// Recorded, but its blobs are not there: not found, not a crash.
	if _, err := s.Get("busybox"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get: %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].Ref != "docker.io/library/busybox:latest" {
		t.Errorf("List: %+v, %v", list, err)
	}
	// A Touch rewrites it, keeping the rest.
	if err := s.Touch("localhost:5000/app@sha256:" + strings.Repeat("3", 64)); err != nil {
		t.Fatal(err)
	}
	rf2, err := s.readRefs()
	if err != nil || rf2.Refs["docker.io/library/busybox:latest"] != bb {
		t.Errorf("after Touch: %+v, %v", rf2, err)
	}
	// A version from the future is refused rather than misread.
	os.WriteFile(filepath.Join(s.root, "refs.json"), []byte(`{"version":99,"refs":{}}`), 0o600)
	if _, err := s.List(); err == nil {
		t.Error("refs.json version 99 read")
	}
}

func TestOpenCreatesLayoutAndCleansStaleTemp(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "images")
	s := newStore(t, Options{Root: root})
	for _, d := range []string{"blobs/sha256", "layers/sha256", "tmp"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	if fi, _ := os.Stat(root); fi.Mode().Perm() != 0o700 {
		t.Errorf("root mode %v", fi.Mode())
	}
	old := time.Now().Add(-2 * time.Hour)
	mk := func(p string, dir bool) {
		if dir {
			os.MkdirAll(filepath.Join(p, "sub"), 0o755)
			os.WriteFile(filepath.Join(p, "sub", "f"), []byte("x"), 0o644)
		} else {
			os.WriteFile(p, []byte("x"), 0o600)
		}
	}
	staleBlob, freshBlob := filepath.Join(s.tmpDir(), "blob-old"), filepath.Join(s.tmpDir(), "blob-new")
	staleLayer, staleRm := filepath.Join(s.layersTop(), "tmp-old"), filepath.Join(s.layersTop(), "rm-old")
	mk(staleBlob, false)
	mk(freshBlob, false)
	mk(staleLayer, true)
	mk(staleRm, true)
	for _, p := range []string{staleBlob, staleLayer, staleRm} {
		os.Chtimes(p, old, old)
	}
	if _, err := Open(Options{Root: root}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{staleBlob, staleLayer, staleRm} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s kept: %v", p, err)
		}
	}
	if _, err := os.Lstat(freshBlob); err != nil {
		t.Errorf("fresh temp file removed: %v", err)
	}
}

func TestRemoveTreeStaysInside(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "keep"), []byte("keep"), 0o644)

	tree := filepath.Join(base, "tree")
	os.MkdirAll(filepath.Join(tree, "a", "b", "c"), 0o755)
	os.WriteFile(filepath.Join(tree, "a", "b", "c", "f"), []byte("x"), 0o644)
	os.Symlink(outside, filepath.Join(tree, "a", "abs"))
	os.Symlink("../../../outside", filepath.Join(tree, "a", "b", "rel"))
	os.Chmod(filepath.Join(tree, "a", "b"), 0o500) // root ignores it; a user gets an error
	if err := removeTree(tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tree left: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(data) != "keep" {
		t.Errorf("symlink target touched: %q, %v", data, err)
	}
	if err := removeTree(tree); err != nil {
		t.Errorf("removing a missing tree: %v", err)
	}
}

func TestRemoveTreeDoesNotCrossMounts(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "keep"), []byte("keep"), 0o644)
	tree := filepath.Join(base, "tree")
	mnt := filepath.Join(tree, "sub", "mnt")
	os.MkdirAll(mnt, 0o755)
	os.WriteFile(filepath.Join(tree, "sub", "other"), []byte("x"), 0o644)
	// A bind mount of the same file system: only the mount ID tells it.
	if err := unix.Mount(outside, mnt, "", unix.MS_BIND, ""); err != nil {
		testutil.SkipOrFail(t, "bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })

	err := removeTree(tree)
	if !errors.Is(err, errMountPoint) {
		t.Errorf("removeTree over a mount: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(data) != "keep" {
		t.Errorf("mounted content touched: %q, %v", data, err)
	}
	if _, err := os.Lstat(filepath.Join(tree, "sub", "other")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the rest was not removed: %v", err)
	}
}

func TestFlightSharesAndSurvivesOneCaller(t *testing.T) {
	var f flight
	release := make(chan struct{})
	var runs atomic.Int32
	work := func(ctx context.Context, add func(int64)) error {
		runs.Add(1)
		add(10)
		select {
		case <-release:
			add(5)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var sinkA, sinkB atomic.Int64
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() { errA <- f.do(ctxA, "k", &sinkA, work) }()
	for runs.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	errB := make(chan error, 1)
	go func() { errB <- f.do(context.Background(), "k", &sinkB, work) }()
	time.Sleep(20 * time.Millisecond)
	cancelA() // the caller that started it leaves; B still waits
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Errorf("A: %v", err)
	}
	close(release)
	if err := <-errB; err != nil {
		t.Errorf("B: %v (the work was cancelled with a waiter left)", err)
	}
	if runs.Load() != 1 || sinkB.Load() != 15 {
		t.Errorf("runs %d, B counted %d bytes", runs.Load(), sinkB.Load())
	}
	f.wg.Wait()

	// When every caller leaves, the work is cancelled.
	ctxC, cancelC := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go f.do(ctxC, "k2", nil, func(ctx context.Context, _ func(int64)) error {
		<-ctx.Done()
		close(stopped)
		return ctx.Err()
	})
	time.Sleep(10 * time.Millisecond)
	cancelC()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("work went on with no caller left")
	}
	f.wg.Wait()
}
