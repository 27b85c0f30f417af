package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"

	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/internal/testutil/registry"
)

// importTest is what import tests need: root (unpacking chowns).
func importTest(t *testing.T) *Store {
	t.Helper()
	testutil.RequireRoot(t)
	return newStore(t, Options{})
}

// writeLayout writes an OCI image layout directory holding img, its
// index.json entry annotated with ann.
func writeLayout(t *testing.T, img v1.Image, ann map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(ann)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tarDir writes dir as a tar (an oci-archive of a layout), gzip'd or not.
func tarDir(t *testing.T, dir string, gz bool) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	out := filepath.Join(t.TempDir(), "image.oci.tar")
	if gz {
		out += ".gz"
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		data = zb.Bytes()
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// writeTar writes raw tar entries (hostile ones included) to a file.
func writeTar(t *testing.T, entries []registry.Entry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "archive.tar")
	if err := os.WriteFile(p, registry.Tar(t, entries), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dockerArchive writes img as `docker save` would (tarball.Write), under
// ref (a tag, or a digest for no RepoTags), zstd-compressed or not.
func dockerArchive(t *testing.T, refs map[string]v1.Image, zst bool) string {
	t.Helper()
	m := map[name.Reference]v1.Image{}
	for r, img := range refs {
		ref, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		m[ref] = img
	}
	p := filepath.Join(t.TempDir(), "image.docker.tar")
	if err := tarball.MultiRefWriteToFile(p, m); err != nil {
		t.Fatal(err)
	}
	if !zst {
		return p
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".zst", buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p + ".zst"
}

// nothingStored checks that nothing was stored: no reference, blob, layer
// or temp entry.
func nothingStored(t *testing.T, s *Store) {
	t.Helper()
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("references: %+v, %v", list, err)
	}
	for _, d := range []string{s.blobDir(), s.layerDir(), s.tmpDir()} {
		if names := dirEntries(t, d); len(names) != 0 {
			t.Errorf("%s holds %v", d, names)
		}
	}
	if names := dirEntries(t, s.layersTop()); !slices.Equal(names, []string{"sha256"}) {
		t.Errorf("%s holds %v", s.layersTop(), names)
	}
}

func digestOf(t *testing.T, img interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestImportFormats(t *testing.T) {
	img := appImage(t, "web")
	oci := registry.OCI(img)
	const ref = "example.local/team/web:1"
	full := map[string]string{AnnotationRefName: ref}
	for _, tc := range []struct {
		name   string
		src    func(t *testing.T) string
		digest string // "" where the importer makes the manifest
	}{
		{"layout", func(t *testing.T) string { return writeLayout(t, oci, full) }, digestOf(t, oci)},
		{"docker media types in a layout", func(t *testing.T) string { return writeLayout(t, img, full) }, digestOf(t, img)},
		{"oci-archive", func(t *testing.T) string { return tarDir(t, writeLayout(t, oci, full), false) }, digestOf(t, oci)},
		{"oci-archive gzip", func(t *testing.T) string { return tarDir(t, writeLayout(t, oci, full), true) }, digestOf(t, oci)},
		{"docker-archive", func(t *testing.T) string { return dockerArchive(t, map[string]v1.Image{ref: img}, false) }, ""},
		{"docker-archive zstd", func(t *testing.T) string { return dockerArchive(t, map[string]v1.Image{ref: img}, true) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := importTest(t)
			got, err := s.Import(context.Background(), tc.src(t), "")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Ref != ref {
				t.Fatalf("imported %+v", got)
			}
			if tc.digest != "" && got[0].Digest != tc.digest {
				t.Errorf("digest %s, want %s", got[0].Digest, tc.digest)
			}
			stored, err := s.Get(ref)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Digest != got[0].Digest || !slices.Equal(stored.Config.Config.Cmd, []string{"/app/web"}) {
				t.Errorf("Get: %s %+v", stored.Digest, stored.Config.Config)
			}
			hasBusybox(t, stored)
			if b, err := os.ReadFile(filepath.Join(stored.Layers[1], "app", "web")); err != nil || string(b) != "I am web\n" {
				t.Errorf("app layer: %q, %v", b, err)
			}
			if names := dirEntries(t, s.tmpDir()); len(names) != 0 {
				t.Errorf("tmp holds %v", names)
			}
		})
	}
}

func TestImportTamperedBlobStoresNothing(t *testing.T) {
	img := registry.OCI(appImage(t, "web"))
	for i, what := range []string{"busybox layer", "app layer"} {
		t.Run(what, func(t *testing.T) {
			s := importTest(t)
			dir := writeLayout(t, img, map[string]string{AnnotationRefName: "example.local/web:1"})
			d := layerDigests(t, img)[i]
			blob := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
			fi, err := os.Stat(blob)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(blob, bytes.Repeat([]byte("x"), int(fi.Size())), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = s.Import(context.Background(), dir, "")
			if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), d) {
				t.Fatalf("import of a tampered %s: %v", what, err)
			}
			nothingStored(t, s)
			if _, err := s.Get("example.local/web:1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get: %v", err)
			}
		})
	}
}

func TestImportNames(t *testing.T) {
	img := registry.OCI(appImage(t, "web"))
	ctx := context.Background()
	refsOf := func(imgs []*Image) []string {
		var out []string
		for _, i := range imgs {
			out = append(out, i.Ref)
		}
		return out
	}

	t.Run("no name anywhere", func(t *testing.T) {
		for _, src := range []string{
			writeLayout(t, img, nil),
			dockerArchive(t, map[string]v1.Image{"example.local/web@" + digestOf(t, img): img}, false),
		} {
			s := importTest(t)
			_, err := s.Import(ctx, src, "")
			if err == nil || !strings.Contains(err.Error(), "--name") {
				t.Errorf("%s: %v", src, err)
			}
			nothingStored(t, s)
			got, err := s.Import(ctx, src, "example.local/web:2")
			if err != nil || !slices.Equal(refsOf(got), []string{"example.local/web:2"}) {
				t.Errorf("with --name: %v, %v", refsOf(got), err)
			}
		}
	})
	t.Run("a tag needs a repository", func(t *testing.T) {
		s := importTest(t)
		dir := writeLayout(t, img, map[string]string{AnnotationRefName: "1.4"})
		if _, err := s.Import(ctx, dir, ""); err == nil || !strings.Contains(err.Error(), `tag "1.4"`) || !strings.Contains(err.Error(), "--name") {
			t.Errorf("tag alone: %v", err)
		}
		got, err := s.Import(ctx, dir, "example.local/web")
		if err != nil || !slices.Equal(refsOf(got), []string{"example.local/web:1.4"}) {
			t.Errorf("--name REPOSITORY: %v, %v", refsOf(got), err)
		}
		got, err = s.Import(ctx, dir, "example.local/web:stable")
		if err != nil || !slices.Equal(refsOf(got), []string{"example.local/web:stable"}) {
			t.Errorf("--name REPOSITORY:TAG: %v, %v", refsOf(got), err)
		}
		wrong := "example.local/web@sha256:" + strings.Repeat("0", 64)
		if _, err := s.Import(ctx, dir, wrong); err == nil {
			t.Errorf("--name with another digest accepted")
		}
		byDigest := "example.local/web@" + digestOf(t, img)
		if _, err := s.Import(ctx, dir, byDigest); err != nil {
			t.Errorf("--name with its digest: %v", err)
		}
		if _, err := s.Get(byDigest); err != nil {
			t.Error(err)
		}
	})
	t.Run("containerd's full name wins over the tag", func(t *testing.T) {
		s := importTest(t)
		dir := writeLayout(t, img, map[string]string{AnnotationRefName: "1", AnnotationContainerdName: "docker.io/library/web:1"})
		got, err := s.Import(ctx, dir, "")
		if err != nil || !slices.Equal(refsOf(got), []string{"docker.io/library/web:1"}) {
			t.Errorf("%v, %v", refsOf(got), err)
		}
	})
	t.Run("several images", func(t *testing.T) {
		s := importTest(t)
		other := registry.OCI(appImage(t, "db"))
		src := dockerArchive(t, map[string]v1.Image{
			"example.local/web:1": img, "example.local/web:latest": img, "example.local/db:1": other,
		}, false)
		if _, err := s.Import(ctx, src, "example.local/x:1"); err == nil || !strings.Contains(err.Error(), "2 images") {
			t.Errorf("one name for two images: %v", err)
		}
		nothingStored(t, s)
		got, err := s.Import(ctx, src, "")
		want := []string{"example.local/db:1", "example.local/web:1", "example.local/web:latest"}
		if refs := refsOf(got); err != nil || !slices.Equal(slices.Sorted(slices.Values(refs)), want) {
			t.Errorf("%v, %v", refs, err)
		}
		// A repository alone keeps their tags, but web:1 and db:1 collide.
		if _, err := s.Import(ctx, src, "example.local/x"); err == nil || !strings.Contains(err.Error(), "two images") {
			t.Errorf("colliding names: %v", err)
		}
	})
}

func TestImportTwiceIsANoOp(t *testing.T) {
	s := importTest(t)
	dir := writeLayout(t, registry.OCI(appImage(t, "web")), map[string]string{AnnotationRefName: "example.local/web:1"})
	first, err := s.Import(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	refs, err := os.ReadFile(s.RefsPath())
	if err != nil {
		t.Fatal(err)
	}
	blobs, layers := dirEntries(t, s.blobDir()), dirEntries(t, s.layerDir())
	second, err := s.Import(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 1 || second[0].Digest != first[0].Digest || second[0].Ref != first[0].Ref {
		t.Errorf("second import: %+v", second)
	}
	if again, _ := os.ReadFile(s.RefsPath()); !bytes.Equal(again, refs) {
		t.Errorf("refs.json changed:\n%s\n%s", refs, again)
	}
	if !slices.Equal(dirEntries(t, s.blobDir()), blobs) || !slices.Equal(dirEntries(t, s.layerDir()), layers) {
		t.Error("blobs or layers changed")
	}
	if names := dirEntries(t, s.tmpDir()); len(names) != 0 {
		t.Errorf("tmp holds %v", names)
	}
}

func TestImportMultiPlatform(t *testing.T) {
	host := registry.HostPlatform()
	idx, digests := registry.PlatformIndex(t, append([]v1.Platform{host}, registry.OtherPlatforms()...)...)
	want := digests[host.OS+"/"+host.Architecture]
	idxDigest := digestOf(t, idx)

	t.Run("index.json is the index", func(t *testing.T) {
		s := importTest(t)
		dir := filepath.Join(t.TempDir(), "layout")
		if _, err := layout.Write(dir, idx); err != nil {
			t.Fatal(err)
		}
		got, err := s.Import(context.Background(), dir, "example.local/multi:1")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Digest != want {
			t.Fatalf("imported %+v, want digest %s", got, want)
		}
		b, err := os.ReadFile(filepath.Join(got[0].Layers[1], registry.PlatformFile))
		if err != nil || strings.TrimSpace(string(b)) != host.OS+"/"+host.Architecture {
			t.Errorf("platform file %q, %v", b, err)
		}
	})
	t.Run("an index in index.json", func(t *testing.T) {
		s := importTest(t)
		dir := filepath.Join(t.TempDir(), "layout")
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{AnnotationRefName: "example.local/multi:2"})); err != nil {
			t.Fatal(err)
		}
		got, err := s.Import(context.Background(), tarDir(t, dir, true), "")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Digest != want || got[0].Ref != "example.local/multi:2" {
			t.Fatalf("imported %+v, want digest %s", got, want)
		}
		// The index is kept and recorded, as a pull does.
		if img, err := s.GetDigest(idxDigest); err != nil || img.Digest != want {
			t.Errorf("GetDigest(index): %v", err)
		}
	})
}

func TestImportArchiveRefusesEscapes(t *testing.T) {
	layoutDir := writeLayout(t, registry.OCI(appImage(t, "web")), map[string]string{AnnotationRefName: "example.local/web:1"})
	index, err := os.ReadFile(filepath.Join(layoutDir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	good := []registry.Entry{
		registry.File("oci-layout", 0o644, `{"imageLayoutVersion":"1.0.0"}`),
		registry.File("index.json", 0o644, string(index)),
	}
	for _, tc := range []struct {
		name  string
		entry registry.Entry
		want  string
	}{
		{"dot-dot", registry.File("../x", 0o644, "escaped"), ".."},
		{"dot-dot inside", registry.File("blobs/../../x", 0o644, "escaped"), ".."},
		{"absolute", registry.File("/x-reconciled-import-test", 0o644, "escaped"), "absolute"},
		{"symlink", registry.Symlink("blobs", "/"), "not allowed"},
		{"hard link", registry.Hardlink("x", "oci-layout"), "not allowed"},
		{"twice", registry.File("oci-layout", 0o644, "again"), "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := importTest(t)
			// The hostile entry first, and again after the good ones.
			src := writeTar(t, append(append([]registry.Entry{tc.entry}, good...), tc.entry))
			if tc.name == "twice" {
				src = writeTar(t, append(slices.Clone(good), tc.entry))
			}
			_, err := s.Import(context.Background(), src, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("import: %v, want an error with %q", err, tc.want)
			}
			nothingStored(t, s)
			for _, p := range []string{filepath.Join(s.root, "x"), filepath.Join(s.tmpDir(), "x"), filepath.Join(filepath.Dir(src), "x"), "/x-reconciled-import-test"} {
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s: %v", p, err)
				}
			}
		})
	}
}

func TestImportRefusesOtherFiles(t *testing.T) {
	s := newStore(t, Options{})
	notTar := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notTar, []byte(strings.Repeat("hello\n", 200)), 0o644)
	emptyDir := t.TempDir()
	plainTar := writeTar(t, []registry.Entry{registry.File("hello", 0o644, "hi")})
	for _, src := range []string{notTar, emptyDir, plainTar, filepath.Join(emptyDir, "missing")} {
		if _, err := s.Import(context.Background(), src, ""); err == nil {
			t.Errorf("%s imported", src)
		} else {
			t.Logf("%s: %v", filepath.Base(src), err)
		}
	}
	if names := dirEntries(t, s.tmpDir()); len(names) != 0 {
		t.Errorf("tmp holds %v", names)
	}
}

// A docker-archive whose layer does not match its config's diff ID is
// refused at unpacking, and records nothing.
func TestImportDockerArchiveDiffIDMismatch(t *testing.T) {
	s := importTest(t)
	src := dockerArchive(t, map[string]v1.Image{"example.local/web:1": appImage(t, "web")}, false)
	// Swap the config's first diff ID for another.
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(data)), tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if strings.HasPrefix(h.Name, "sha256:") {
			cf, err := v1.ParseConfigFile(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
			body, _ = json.Marshal(cf)
			h.Size = int64(len(body))
		}
		tw.WriteHeader(h)
		tw.Write(body)
	}
	tw.Close()
	os.WriteFile(src, out.Bytes(), 0o644)
	_, err = s.Import(context.Background(), src, "")
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("import: %v", err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("recorded %+v", list)
	}
	if names := dirEntries(t, s.tmpDir()); len(names) != 0 {
		t.Errorf("tmp holds %v", names)
	}
}
