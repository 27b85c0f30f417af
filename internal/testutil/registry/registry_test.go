package registry

import (
	"errors"
	"net/http"
	"os"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestPushedImageReadsBack(t *testing.T) {
	reg := Start(t)
	img := BusyboxImage(t)
	digest := Push(t, reg, "busybox:1", img)

	ref, err := name.ParseReference(reg.Ref("busybox:1"), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d.String() != digest {
		t.Errorf("digest %s, pushed %s", d, digest)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v, %v", layers, err)
	}
	ld, _ := layers[0].Digest()
	if _, err := os.Stat(reg.BlobPath(ld.String())); err != nil {
		t.Errorf("layer blob not where BlobPath says: %v", err)
	}
	// Same content, same digest: images built twice share their layer.
	if again, _ := BusyboxLayer(t).Digest(); again != ld {
		t.Errorf("BusyboxLayer digest changed: %s then %s", ld, again)
	}

	reg.Stop()
	if _, err := http.Get("http://" + reg.Addr + "/v2/"); err == nil {
		t.Error("registry still answers after Stop")
	}
}

func TestAuthRefusesAnonymous(t *testing.T) {
	reg := Start(t, WithAuth("alice", "s3cret"))
	Push(t, reg, "app:1", BusyboxImage(t))
	ref, err := name.ParseReference(reg.Ref("app:1"), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Image(ref)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous pull: %v, want 401", err)
	}
	if _, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
		t.Fatalf("authenticated pull: %v", err)
	}
}

func TestPlatformIndexNamesEachPlatform(t *testing.T) {
	reg := Start(t)
	idx, digests := PlatformIndex(t, append([]v1.Platform{HostPlatform()}, OtherPlatforms()...)...)
	PushIndex(t, reg, "multi:1", idx)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 3 || len(digests) != 3 {
		t.Fatalf("index has %d manifests, %d digests", len(im.Manifests), len(digests))
	}
	seen := map[string]bool{}
	for _, d := range digests {
		if seen[d] {
			t.Errorf("two platforms share manifest %s", d)
		}
		seen[d] = true
	}
}
