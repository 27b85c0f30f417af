package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/internal/daemon"
	"reconciled.dev/reconciled/internal/testutil/registry"
)

// exportedArchive builds an image in Go (no registry), imports it into a
// seed store of its own with `reconciled image import` and writes it out
// with `reconciled image export`: the archive one host hands another.
func exportedArchive(t *testing.T, dir, ref string, cfg v1.Config) string {
	t.Helper()
	img := registry.NewImage(t, cfg, registry.BusyboxLayer(t))
	lay := filepath.Join(dir, "layout")
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{image.AnnotationRefName: ref})); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(dir, "seed-images")
	if out, err := exec.Command(bin, "image", "import", "--image-root", seed, lay).CombinedOutput(); err != nil {
		t.Fatalf("image import: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "exported.oci.tar")
	if out, err := exec.Command(bin, "image", "export", "--image-root", seed, ref, archive).CombinedOutput(); err != nil {
		t.Fatalf("image export: %v\n%s", err, out)
	}
	return archive
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// importOf is the report's entry for path.
func importOf(r *report, path string) *daemon.ImportReport {
	for i := range r.Imports {
		if r.Imports[i].Path == path {
			return &r.Imports[i]
		}
	}
	return nil
}

// With no registry at all, a container with imagePullPolicy Never waits
// for its image, saying where to drop it; an oci-archive written slowly
// in place into the import directory is imported once whole, and the
// container starts; the same archive again imports nothing; a corrupt
// archive shows its error and changes nothing else; a docker-archive
// written there by skopeo is imported too.
func TestImageImportDirectory(t *testing.T) {
	e := newEnv(t)
	importDir := filepath.Join(e.dir, "import")
	work := filepath.Join(e.dir, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	const ref = "example.local/x:1"
	archive := exportedArchive(t, work, ref, v1.Config{Cmd: []string{"/bin/sh", "-c", "echo imported-image-runs; exec sleep 1000"}})
	data, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}

	name := e.name("x")
	e.write("x.yaml", imageManifest(name, ref, "  imagePullPolicy: Never\n"))
	// A long resync: what starts the container is the import, not the
	// periodic pass.
	e.start("--image-import-dir", importDir, "--resync", "5m")
	e.waitFor(name+" says its image is missing", 20*time.Second, func(r *report) bool {
		c := r.Get(name)
		return c != nil && c.Phase == "backoff" && strings.Contains(c.Message, "is not in the store and imagePullPolicy is Never") &&
			strings.Contains(c.Message, importDir)
	})
	if fi, err := os.Stat(importDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("import directory: %v %v", fi, err)
	}

	// Written in place, slowly: half, a pause, the rest.
	dropped := filepath.Join(importDir, "x.tar")
	f, err := os.OpenFile(dropped, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if r, err := e.client().Status(); err != nil || len(r.Imports) != 0 {
		t.Errorf("a half-written archive was looked at: %+v %v", r.Imports, err)
	}
	if _, err := f.Write(data[len(data)/2:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c := e.waitRunning(name, 30*time.Second)
	e.waitLogs(name, "imported-image-runs")
	digest := sha256File(t, dropped)
	r := e.waitFor("the import listed", 10*time.Second, func(r *report) bool { return importOf(r, dropped) != nil })
	im := importOf(r, dropped)
	if im.Digest != digest || !slices.Equal(im.Images, []string{ref}) || im.Error != "" || im.Imported.IsZero() {
		t.Errorf("status lists %+v, want %s imported as %s", im, digest, ref)
	}
	if n := e.daemonLogCount("importing from the import directory"); n != 1 {
		t.Errorf("%d imports, want 1", n)
	}
	out, err := exec.Command(bin, "status", "--state", e.state).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "imports:") || !strings.Contains(string(out), "x.tar") || !strings.Contains(string(out), ref) {
		t.Errorf("status text lacks the imports:\n%s %v", out, err)
	}

	// The same archive again, under another name: nothing is imported.
	again := filepath.Join(work, "again.tar")
	if err := os.WriteFile(again, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(again, filepath.Join(importDir, "x-again.tar")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := e.daemonLogCount("importing from the import directory"); n != 1 {
		t.Errorf("the same content was imported again: %d imports", n)
	}

	// A corrupt archive: its error is listed, nothing else changes.
	bad := filepath.Join(work, "bad.tar")
	if err := os.WriteFile(bad, []byte("this is no archive\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badDropped := filepath.Join(importDir, "bad.tar")
	if err := os.Rename(bad, badDropped); err != nil {
		t.Fatal(err)
	}
	r = e.waitFor("the corrupt archive's error", 10*time.Second, func(r *report) bool {
		b := importOf(r, badDropped)
		return b != nil && b.Error != ""
	})
	if b := importOf(r, badDropped); b.Digest != sha256File(t, badDropped) || len(b.Images) != 0 {
		t.Errorf("corrupt archive listed as %+v", b)
	}
	if im := importOf(r, dropped); im == nil || im.Error != "" || im.Digest != digest {
		t.Errorf("the good import changed: %+v", im)
	}
	if k := r.Get(name); k == nil || k.Pid != c.Pid || k.Phase != "running" {
		t.Errorf("the container changed: %+v (was pid %d)", k, c.Pid)
	}
	time.Sleep(500 * time.Millisecond)
	if n := e.daemonLogCount("import failed"); n != 1 {
		t.Errorf("the corrupt archive was tried %d times, want 1", n)
	}

	// A docker-archive that skopeo writes straight into the directory.
	const ref2 = "example.local/y:1"
	name2 := e.name("y")
	e.write("y.yaml", imageManifest(name2, ref2, "  imagePullPolicy: Never\n"))
	e.waitFor(name2+" says its image is missing", 20*time.Second, func(r *report) bool {
		c := r.Get(name2)
		return c != nil && c.Phase == "backoff" && strings.Contains(c.Message, importDir)
	})
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Fatalf("skopeo is not installed (apt-get install skopeo): %v", err)
	}
	dockerDropped := filepath.Join(importDir, "y.docker.tar")
	if out, err := exec.Command("skopeo", "--insecure-policy", "copy", "oci-archive:"+archive,
		"docker-archive:"+dockerDropped+":"+ref2).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	e.waitRunning(name2, 30*time.Second)
	r = e.waitFor("the docker-archive listed", 10*time.Second, func(r *report) bool { return importOf(r, dockerDropped) != nil })
	if im := importOf(r, dockerDropped); im.Error != "" || !slices.Equal(im.Images, []string{ref2}) || im.Digest != sha256File(t, dockerDropped) {
		t.Errorf("docker-archive listed as %+v", im)
	}
	// skopeo wrote it in place: it was read once, whole.
	if n := e.daemonLogCount("importing from the import directory"); n != 3 {
		t.Errorf("%d imports in all, want 3 (x.tar, bad.tar, y.docker.tar)", n)
	}
}
