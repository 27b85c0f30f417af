package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"reconciled.dev/reconciled/internal/testutil/registry"
)

// exportTestImage is an image of the busybox layer and a file layer.
func exportTestImage(t *testing.T) v1.Image {
	t.Helper()
	return registry.NewImage(t, v1.Config{Cmd: []string{"/bin/cat", "/app/hello"}, Env: []string{"PATH=/bin"}},
		registry.BusyboxLayer(t), registry.FileLayer(t, map[string]string{"app/hello": "hello from export\n"}))
}

// An exported image imports into another store under the same
// reference and manifest digest, whole and runnable (its layers
// unpacked), whatever media types it was stored with.
func TestExportThenImportKeepsDigest(t *testing.T) {
	ctx := context.Background()
	img := exportTestImage(t)
	for _, tc := range []struct {
		name string
		img  v1.Image
	}{
		{"docker media types", img},
		{"oci media types", registry.OCI(img)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := importTest(t)
			const ref = "example.local/team/hello:1"
			orig, err := src.Import(ctx, writeLayout(t, tc.img, map[string]string{AnnotationRefName: ref}), "")
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "hello.oci.tar")
			exp, err := src.ExportFile(ctx, ref, file)
			if err != nil {
				t.Fatal(err)
			}
			if exp.Digest != orig[0].Digest || exp.Ref != ref {
				t.Errorf("exported %s@%s, want %s@%s", exp.Ref, exp.Digest, ref, orig[0].Digest)
			}
			if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("temp file left: %v", err)
			}
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("exported file: %v %v", fi, err)
			}

			dst := newStore(t, Options{})
			got, err := dst.Import(ctx, file, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Ref != ref || got[0].Digest != orig[0].Digest {
				t.Fatalf("imported %+v, want %s@%s", got, ref, orig[0].Digest)
			}
			stored, err := dst.Get(ref)
			if err != nil {
				t.Fatal(err)
			}
			hasBusybox(t, stored)
			if b, err := os.ReadFile(filepath.Join(stored.Layers[1], "app", "hello")); err != nil || string(b) != "hello from export\n" {
				t.Errorf("app layer: %q, %v", b, err)
			}
			if !bytes.Equal(stored.ConfigJSON, orig[0].ConfigJSON) {
				t.Errorf("config changed:\n%s\n%s", stored.ConfigJSON, orig[0].ConfigJSON)
			}
		})
	}
}

// The archive is a layout: oci-layout, an index.json naming the platform
// manifest by its full reference, and the blobs under their digests.
// Exporting twice gives the same bytes.
func TestExportArchiveContent(t *testing.T) {
	ctx := context.Background()
	s := importTest(t)
	img := registry.OCI(exportTestImage(t))
	// A short name: the annotation carries the normalized reference.
	if _, err := s.Import(ctx, writeLayout(t, img, nil), "busybox-test:1"); err != nil {
		t.Fatal(err)
	}
	var first, second bytes.Buffer
	exp, err := s.Export(ctx, "busybox-test:1", &first)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Export(ctx, "docker.io/library/busybox-test:1", &second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Error("two exports of one image differ")
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(first.Bytes()))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			files[h.Name], _ = io.ReadAll(tr)
		}
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json: %s", files["index.json"])
	}
	d := index.Manifests[0]
	if d.Digest.String() != exp.Digest || d.Annotations[AnnotationRefName] != "docker.io/library/busybox-test:1" {
		t.Errorf("index.json entry %+v, want %s named docker.io/library/busybox-test:1", d, exp.Digest)
	}
	if d.Platform == nil || d.Platform.OS != exp.Config.OS || d.Platform.Architecture != exp.Config.Architecture {
		t.Errorf("index.json entry's platform %+v", d.Platform)
	}
	if !strings.Contains(string(files["oci-layout"]), `"imageLayoutVersion"`) {
		t.Errorf("oci-layout: %q", files["oci-layout"])
	}
	want := []string{"blobs/sha256/" + d.Digest.Hex}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, "blobs/sha256/"+m.Config.Digest.Hex)
	for _, l := range m.Layers {
		want = append(want, "blobs/sha256/"+l.Digest.Hex)
	}
	want = append(want, "index.json", "oci-layout")
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("archive files %v, want %v", names, want)
	}
}

// A store missing a blob of the image writes nothing under the file's
// name, and says what is missing.
func TestExportMissingBlobLeavesNoFile(t *testing.T) {
	ctx := context.Background()
	s := importTest(t)
	img := registry.OCI(exportTestImage(t))
	if _, err := s.Import(ctx, writeLayout(t, img, map[string]string{AnnotationRefName: "example.local/x:1"}), ""); err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.blobPath(m.Layers[1].Digest)); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "x.tar")
	_, err = s.ExportFile(ctx, "example.local/x:1", file)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), m.Layers[1].Digest.String()) {
		t.Errorf("export with a missing blob: %v", err)
	}
	if names := dirEntries(t, filepath.Dir(file)); len(names) != 0 {
		t.Errorf("left behind: %v", names)
	}
	if _, err := s.ExportFile(ctx, "example.local/absent:1", file); !errors.Is(err, ErrNotFound) {
		t.Errorf("export of an absent image: %v", err)
	}
}
