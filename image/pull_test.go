package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"reconciled.dev/reconciled/internal/testutil/registry"
)

// appImage is busybox plus a small layer of its own (so that two apps share
// the busybox layer and nothing else).
func appImage(t *testing.T, name string) v1.Image {
	t.Helper()
	return registry.NewImage(t, v1.Config{
		Entrypoint: []string{"/bin/cat"},
		Cmd:        []string{"/app/" + name},
		Env:        []string{"PATH=/bin", "APP=" + name},
		WorkingDir: "/app",
		User:       "1234:2345",
	}, registry.BusyboxLayer(t), registry.FileLayer(t, map[string]string{"app/" + name: "I am " + name + "\n"}))
}

func layerDigests(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}

func diffIDs(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf.RootFS.DiffIDs
}

func TestPullByTagThenGetWithoutNetwork(t *testing.T) {
	reg := pullTest(t)
	pushed := appImage(t, "web")
	digest := registry.Push(t, reg, "team/web:1.0", pushed)
	s := newStore(t, Options{})

	var mu sync.Mutex
	var calls []Progress
	var times []time.Time
	img, err := s.Pull(context.Background(), reg.Ref("team/web:1.0"), func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, p)
		times = append(times, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := reg.Ref("team/web:1.0"); img.Ref != want {
		t.Errorf("Ref %q, want %q", img.Ref, want)
	}
	if img.Digest != digest {
		t.Errorf("Digest %s, pushed %s", img.Digest, digest)
	}
	if got := img.Config.Config.Cmd; len(got) != 1 || got[0] != "/app/web" {
		t.Errorf("Cmd %q", got)
	}
	if img.Config.Config.User != "1234:2345" || img.Config.Config.WorkingDir != "/app" {
		t.Errorf("config %+v", img.Config.Config)
	}
	rawCfg, _ := pushed.RawConfigFile()
	if string(img.ConfigJSON) != string(rawCfg) {
		t.Errorf("ConfigJSON differs from the pushed config")
	}
	if len(img.Layers) != 2 {
		t.Fatalf("layers %v", img.Layers)
	}
	for i, d := range diffIDs(t, pushed) {
		if want := filepath.Join(s.root, "layers", "sha256", d.Hex); img.Layers[i] != want {
			t.Errorf("layer %d at %s, want %s", i, img.Layers[i], want)
		}
	}
	hasBusybox(t, img)
	if data, err := os.ReadFile(filepath.Join(img.Layers[1], "app", "web")); err != nil || string(data) != "I am web\n" {
		t.Errorf("top layer app/web: %q, %v", data, err)
	}
	manifest, _ := pushed.RawManifest()
	m, _ := pushed.Manifest()
	wantSize := int64(len(manifest)) + m.Config.Size
	var blobs int64 = m.Config.Size
	for _, l := range m.Layers {
		wantSize += l.Size
		blobs += l.Size
	}
	if img.Size != wantSize {
		t.Errorf("Size %d, want %d", img.Size, wantSize)
	}

	mu.Lock()
	if len(calls) == 0 || calls[len(calls)-1] != (Progress{Done: blobs, Total: blobs}) {
		t.Errorf("progress calls %v; want the last to be %d/%d", calls, blobs, blobs)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].Done < calls[i-1].Done || calls[i].Total != blobs {
			t.Errorf("progress goes %v then %v", calls[i-1], calls[i])
		}
		// All but the final call are at least an interval apart.
		if i < len(calls)-1 && times[i].Sub(times[i-1]) < progressInterval/2 {
			t.Errorf("progress calls %v apart", times[i].Sub(times[i-1]))
		}
	}
	mu.Unlock()

	// Without the registry, everything is read from the store.
	reg.Stop()
	got, err := s.Get(reg.Ref("team/web:1.0"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digest || len(got.Layers) != 2 || got.Size != img.Size {
		t.Errorf("Get: %+v", got)
	}
	// By the digest in the same repository, and by digest alone.
	byDigest, err := s.Get(reg.Ref("team/web@" + digest))
	if err != nil {
		t.Fatal(err)
	}
	if byDigest.Digest != digest || byDigest.Ref != reg.Ref("team/web@"+digest) {
		t.Errorf("Get by digest: %s %s", byDigest.Ref, byDigest.Digest)
	}
	if got, err := s.GetDigest(digest); err != nil || got.Ref != reg.Ref("team/web:1.0") {
		t.Errorf("GetDigest: %v, %v", got, err)
	}
	if _, err := s.Get(reg.Ref("team/web:2.0")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a tag never pulled: %v", err)
	}
	if _, err := s.Get(reg.Ref("other@" + digest)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of the digest in another repository: %v", err)
	}

	// A second store on the same root (the CLI beside the daemon) sees it.
	other, err := Open(Options{Root: s.root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Get(reg.Ref("team/web:1.0")); err != nil {
		t.Errorf("second store: %v", err)
	}
}

func TestPullByDigest(t *testing.T) {
	reg := pullTest(t)
	digest := registry.Push(t, reg, "app:1", appImage(t, "app"))
	s := newStore(t, Options{})
	ref := reg.Ref("app@" + digest)
	img, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Ref != ref || img.Digest != digest {
		t.Errorf("pulled %s %s", img.Ref, img.Digest)
	}
	hasBusybox(t, img)
	reg.Stop()
	if _, err := s.Get(ref); err != nil {
		t.Fatal(err)
	}
	// The tag was not pulled.
	if _, err := s.Get(reg.Ref("app:1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get by tag: %v", err)
	}
}

func TestPullZstdOCIImage(t *testing.T) {
	reg := pullTest(t)
	img := registry.OCI(registry.NewImage(t, v1.Config{Cmd: []string{"/bin/sh"}},
		registry.TarLayer(t, registry.BusyboxEntries(t), registry.Zstd)))
	digest := registry.Push(t, reg, "zstd:1", img)
	s := newStore(t, Options{})
	got, err := s.Pull(context.Background(), reg.Ref("zstd:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digest {
		t.Errorf("digest %s, pushed %s", got.Digest, digest)
	}
	hasBusybox(t, got)
}

func TestPullPicksPlatformFromIndex(t *testing.T) {
	reg := pullTest(t)
	// The harness names the host without a variant, as most images do;
	// the store (HostPlatform, v8 on arm64) still takes it.
	platforms := append([]v1.Platform{registry.HostPlatform()}, registry.OtherPlatforms()...)
	idx, digests := registry.PlatformIndex(t, platforms...)
	indexDigest := registry.PushIndex(t, reg, "multi:1", idx)

	for i, want := range platforms {
		t.Run(platformString(want), func(t *testing.T) {
			opts := Options{}
			if i > 0 {
				opts.Platform = &want
			}
			s := newStore(t, opts)
			img, err := s.Pull(context.Background(), reg.Ref("multi:1"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if img.Digest != digests[platformString(want)] {
				t.Errorf("picked %s, want %s's %s (all: %v)", img.Digest, platformString(want), digests[platformString(want)], digests)
			}
			data, err := os.ReadFile(filepath.Join(img.Layers[len(img.Layers)-1], registry.PlatformFile))
			if err != nil || strings.TrimSpace(string(data)) != platformString(want) {
				t.Errorf("/platform holds %q, %v; want %s", data, err, platformString(want))
			}
			if img.Config.Architecture != want.Architecture {
				t.Errorf("config architecture %s", img.Config.Architecture)
			}
			// The index is kept, and names the image too.
			if got, err := s.GetDigest(indexDigest); err != nil || got.Digest != img.Digest {
				t.Errorf("GetDigest(index): %v, %v", got, err)
			}
		})
	}

	s := newStore(t, Options{Platform: &v1.Platform{OS: "linux", Architecture: "mips64le"}})
	_, err := s.Pull(context.Background(), reg.Ref("multi:1"), nil)
	if err == nil || !strings.Contains(err.Error(), "linux/mips64le") {
		t.Errorf("pull for a platform the index lacks: %v", err)
	}
}

// storeIsEmpty checks that a failed pull left nothing: no reference, no
// temp file, no half-unpacked layer.
func storeIsEmpty(t *testing.T, s *Store, exceptBlobs ...string) {
	t.Helper()
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("references recorded: %v, %v", list, err)
	}
	if names := dirEntries(t, s.tmpDir()); len(names) != 0 {
		t.Errorf("temp files left: %v", names)
	}
	for _, n := range dirEntries(t, s.layersTop()) {
		if n != "sha256" {
			t.Errorf("layers/%s left", n)
		}
	}
}

func TestTamperedBlobIsRefused(t *testing.T) {
	reg := pullTest(t)
	img := appImage(t, "tampered")
	registry.Push(t, reg, "tampered:1", img)
	bad := layerDigests(t, img)[1]
	path := reg.BlobPath(bad)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] ^= 0xff // same length, other bytes
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	s := newStore(t, Options{})
	ref := reg.Ref("tampered:1")
	_, err = s.Pull(context.Background(), ref, nil)
	if err == nil {
		t.Fatal("pull of a tampered blob succeeded")
	}
	t.Log(err)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), ref) {
		t.Errorf("error %q: want ErrDigestMismatch naming %s and %s", err, bad, ref)
	}
	s.wait()
	if _, err := os.Stat(filepath.Join(s.blobDir(), strings.TrimPrefix(bad, "sha256:"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tampered blob stored: %v", err)
	}
	if _, err := s.Get(ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after a failed pull: %v", err)
	}
	storeIsEmpty(t, s)
}

func TestWrongDiffIDIsRefused(t *testing.T) {
	reg := pullTest(t)
	img := appImage(t, "liar")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	real := cf.RootFS.DiffIDs[1]
	cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	liar, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	registry.Push(t, reg, "liar:1", liar)
	s := newStore(t, Options{})
	_, err = s.Pull(context.Background(), reg.Ref("liar:1"), nil)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), real.Hex) {
		t.Fatalf("pull with a wrong diff ID: %v", err)
	}
	s.wait()
	for _, h := range []string{real.Hex, strings.Repeat("ab", 32)} {
		if _, err := os.Stat(filepath.Join(s.layerDir(), h)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("layer %s stored: %v", h, err)
		}
	}
	storeIsEmpty(t, s)
}

func writeDockerConfig(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCredentialsFromDockerConfig(t *testing.T) {
	reg := pullTest(t, registry.WithAuth("alice", "s3cret"))
	registry.Push(t, reg, "private:1", appImage(t, "private"))
	ref := reg.Ref("private:1")

	anon := newStore(t, Options{})
	_, err := anon.Pull(context.Background(), ref, nil)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("anonymous pull: %v, want unauthorized", err)
	}
	storeIsEmpty(t, anon)

	auth := func(user, pass string) map[string]any {
		return map[string]any{"auths": map[string]any{
			reg.Addr: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))},
		}}
	}
	wrong := newStore(t, Options{RegistryConfig: writeDockerConfig(t, auth("alice", "guess"))})
	if _, err := wrong.Pull(context.Background(), ref, nil); err == nil {
		t.Fatal("pull with a wrong password succeeded")
	}

	s := newStore(t, Options{RegistryConfig: writeDockerConfig(t, auth("alice", "s3cret"))})
	img, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	hasBusybox(t, img)

	// A credential helper that is not installed is an error, not a
	// silent anonymous pull.
	helper := newStore(t, Options{RegistryConfig: writeDockerConfig(t, map[string]any{
		"credHelpers": map[string]string{reg.Addr: "reconciled-test-missing"},
	})})
	if _, err := helper.Pull(context.Background(), ref, nil); err == nil || !strings.Contains(err.Error(), "reconciled-test-missing") {
		t.Errorf("pull with a missing credential helper: %v", err)
	}
}

func TestPlainHTTPOnlyForLoopbackOrInsecure(t *testing.T) {
	reg := pullTest(t, registry.WithHost("127.0.0.2"))
	registry.Push(t, reg, "app:1", appImage(t, "far"))
	ref := reg.Ref("app:1")

	s := newStore(t, Options{})
	_, err := s.Pull(context.Background(), ref, nil)
	if err == nil {
		t.Fatal("plain HTTP pull from 127.0.0.2 succeeded without Insecure")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "HTTPS") || !strings.Contains(err.Error(), "insecure") {
		t.Errorf("error %q should say HTTPS is required unless insecure", err)
	}
	storeIsEmpty(t, s)

	for _, entry := range []string{reg.Addr, "127.0.0.2"} {
		s := newStore(t, Options{Insecure: []string{entry}})
		img, err := s.Pull(context.Background(), ref, nil)
		if err != nil {
			t.Fatalf("Insecure %q: %v", entry, err)
		}
		hasBusybox(t, img)
	}
}

func TestConcurrentPullsFetchEachBlobOnce(t *testing.T) {
	reg := pullTest(t)
	web, api := appImage(t, "web"), appImage(t, "api")
	registry.Push(t, reg, "web:1", web)
	registry.Push(t, reg, "api:1", api)
	px := startProxy(t, reg)
	s := newStore(t, Options{})

	refs := []string{px.Addr + "/web:1", px.Addr + "/web:1", px.Addr + "/api:1", px.Addr + "/web:1"}
	var wg sync.WaitGroup
	errs := make([]error, len(refs))
	for i, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Pull(context.Background(), ref, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
	}
	cw, _ := web.Manifest()
	ca, _ := api.Manifest()
	for _, d := range append(append(layerDigests(t, web), layerDigests(t, api)...), cw.Config.Digest.String(), ca.Config.Digest.String()) {
		if n := px.gets(d); n != 1 {
			t.Errorf("blob %s fetched %d times, want once", d, n)
		}
	}
	for _, ref := range []string{px.Addr + "/web:1", px.Addr + "/api:1"} {
		img, err := s.Get(ref)
		if err != nil {
			t.Fatal(err)
		}
		hasBusybox(t, img)
	}
}

func TestStoresSharingARootPullTogether(t *testing.T) {
	reg := pullTest(t)
	registry.Push(t, reg, "shared:1", appImage(t, "shared"))
	a := newStore(t, Options{})
	stores := []*Store{a, newStore(t, Options{Root: a.root}), newStore(t, Options{Root: a.root})}
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Pull(context.Background(), reg.Ref("shared:1"), nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
	img, err := a.Get(reg.Ref("shared:1"))
	if err != nil {
		t.Fatal(err)
	}
	hasBusybox(t, img)
	if names := dirEntries(t, a.tmpDir()); len(names) != 0 {
		t.Errorf("temp files left: %v", names)
	}
	if names := dirEntries(t, a.layersTop()); len(names) != 1 {
		t.Errorf("layers/ holds %v, want sha256 alone", names)
	}
	if names := dirEntries(t, a.layerDir()); len(names) != 2 {
		t.Errorf("layers/sha256 holds %v, want 2 layers", names)
	}
}

func TestCancelledPullLeavesNothingAndRetrySucceeds(t *testing.T) {
	reg := pullTest(t)
	img := appImage(t, "slow")
	registry.Push(t, reg, "slow:1", img)
	px := startProxy(t, reg)
	px.slowDigest = layerDigests(t, img)[0] // the busybox layer, ~1 MB
	px.slow.Store(true)
	s := newStore(t, Options{})
	ref := px.Addr + "/slow:1"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-px.started:
			cancel()
		case <-ctx.Done():
		}
	}()
	_, err := s.Pull(ctx, ref, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	t.Log(err)
	s.wait()
	if _, err := s.Get(ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after a cancelled pull: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.blobDir(), strings.TrimPrefix(px.slowDigest, "sha256:"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half-fetched blob stored: %v", err)
	}
	storeIsEmpty(t, s)

	px.slow.Store(false)
	got, err := s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	hasBusybox(t, got)
}

func TestRemoveKeepsWhatOthersShare(t *testing.T) {
	reg := pullTest(t)
	web, api := appImage(t, "web"), appImage(t, "api")
	registry.Push(t, reg, "web:1", web)
	registry.Push(t, reg, "api:1", api)
	s := newStore(t, Options{})
	for _, r := range []string{"web:1", "api:1"} {
		if _, err := s.Pull(context.Background(), reg.Ref(r), nil); err != nil {
			t.Fatal(err)
		}
	}
	webLayers := layerDigests(t, web)
	webDiffs := diffIDs(t, web)
	blobExists := func(d string) bool {
		_, err := os.Stat(filepath.Join(s.blobDir(), strings.TrimPrefix(d, "sha256:")))
		return err == nil
	}
	layerExists := func(h v1.Hash) bool {
		_, err := os.Stat(s.layerPath(h))
		return err == nil
	}

	if err := s.Remove(reg.Ref("web:1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(reg.Ref("web:1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	if !blobExists(webLayers[0]) || !layerExists(webDiffs[0]) {
		t.Error("the shared busybox layer was removed")
	}
	if blobExists(webLayers[1]) || layerExists(webDiffs[1]) {
		t.Error("web's own layer was kept")
	}
	wd, _ := web.Digest()
	if blobExists(wd.String()) {
		t.Error("web's manifest was kept")
	}
	if img, err := s.Get(reg.Ref("api:1")); err != nil {
		t.Errorf("api after removing web: %v", err)
	} else {
		hasBusybox(t, img)
	}

	if err := s.Remove(reg.Ref("api:1")); err != nil {
		t.Fatal(err)
	}
	if names := dirEntries(t, s.blobDir()); len(names) != 0 {
		t.Errorf("blobs left: %v", names)
	}
	if names := dirEntries(t, s.layerDir()); len(names) != 0 {
		t.Errorf("layers left: %v", names)
	}
	if names := dirEntries(t, s.layersTop()); len(names) != 1 {
		t.Errorf("layers/ holds %v", names)
	}
	if err := s.Remove(reg.Ref("api:1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
}

func TestGetChecksEverythingIsThere(t *testing.T) {
	reg := pullTest(t)
	pushed := appImage(t, "web")
	registry.Push(t, reg, "web:1", pushed)
	s := newStore(t, Options{})
	ref := reg.Ref("web:1")
	if _, err := s.Pull(context.Background(), ref, nil); err != nil {
		t.Fatal(err)
	}
	// A layer gone (say, removed by hand): Get says not found, and a
	// pull puts it back.
	if err := removeTree(s.layerPath(diffIDs(t, pushed)[1])); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get without a layer: %v", err)
	}
	if _, err := s.Pull(context.Background(), ref, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ref); err != nil {
		t.Errorf("Get after the repairing pull: %v", err)
	}
	// The config gone.
	m, _ := pushed.Manifest()
	if err := os.Remove(s.blobPath(m.Config.Digest)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ref); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get without the config: %v", err)
	}
}

func TestListAndTouch(t *testing.T) {
	reg := pullTest(t)
	registry.Push(t, reg, "web:1", appImage(t, "web"))
	registry.Push(t, reg, "api:1", appImage(t, "api"))
	s := newStore(t, Options{})
	before := time.Now().Add(-time.Second)
	sizes := map[string]int64{}
	for _, r := range []string{"web:1", "api:1"} {
		img, err := s.Pull(context.Background(), reg.Ref(r), nil)
		if err != nil {
			t.Fatal(err)
		}
		sizes[img.Ref] = img.Size
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Ref != reg.Ref("api:1") || list[1].Ref != reg.Ref("web:1") {
		t.Fatalf("List: %+v", list)
	}
	for _, e := range list {
		if e.Size != sizes[e.Ref] || !e.Created.Equal(registry.Epoch) || e.Pulled.Before(before) || !e.LastUsed.IsZero() || e.Digest == "" {
			t.Errorf("entry %+v", e)
		}
	}
	if err := s.Touch(reg.Ref("web:1")); err != nil {
		t.Fatal(err)
	}
	list, _ = s.List()
	if list[1].LastUsed.Before(before) || !list[0].LastUsed.IsZero() {
		t.Errorf("after Touch: %+v", list)
	}
	// A pull again keeps LastUsed.
	if _, err := s.Pull(context.Background(), reg.Ref("web:1"), nil); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.List(); !again[1].LastUsed.Equal(list[1].LastUsed) {
		t.Errorf("LastUsed after a new pull: %v, was %v", again[1].LastUsed, list[1].LastUsed)
	}
	if err := s.Touch(reg.Ref("nope:1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Touch of an unknown ref: %v", err)
	}
}
