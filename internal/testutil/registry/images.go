package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"reconciled.dev/reconciled/internal/testutil"
)

// Epoch is the modification time of every entry the builders write, so
// that one content always gives one digest.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// The user and group that BusyboxLayer's /etc/passwd and /etc/group name
// besides root.
const (
	AppUser  = "app"
	AppUID   = 1234
	AppGroup = "appgrp"
	AppGID   = 2345
)

// BusyboxApplets are the symlinks to busybox that BusyboxLayer puts in /bin.
var BusyboxApplets = []string{"sh", "echo", "cat", "ls", "sleep", "id", "env", "pwd", "true", "false", "test"}

// Compression is how a layer built here is compressed.
type Compression int

const (
	Gzip Compression = iota
	Zstd
)

// Entry is one tar entry: a header written as is (hostile names and links
// included) and the body of a regular file.
type Entry struct {
	Header tar.Header
	Body   []byte
}

// Dir, File, Symlink and Hardlink build common entries (mode 0755 for
// directories, the given mode for files, root-owned, at Epoch).
func Dir(name string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimSuffix(name, "/") + "/", Mode: 0o755, ModTime: Epoch}}
}

func File(name string, mode int64, body string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: Epoch}, Body: []byte(body)}
}

func Symlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: Epoch}}
}

func Hardlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: Epoch}}
}

// Whiteout deletes name (a path in a lower layer); OpaqueDir hides the
// lower layers' content of dir.
func Whiteout(name string) Entry {
	return File(path.Join(path.Dir(name), ".wh."+path.Base(name)), 0o644, "")
}

func OpaqueDir(dir string) Entry {
	return File(path.Join(dir, ".wh..wh..opq"), 0o644, "")
}

// Tar writes entries, in order, as a tar stream.
func Tar(t testing.TB, entries []Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Header
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if len(e.Body) > 0 {
			if _, err := tw.Write(e.Body); err != nil {
				t.Fatalf("tar body %q: %v", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Compress compresses a tar stream deterministically.
func Compress(t testing.TB, data []byte, c Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	var zw io.WriteCloser
	var err error
	switch c {
	case Zstd:
		zw, err = zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	default:
		zw, err = gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// LayerFromTar makes a layer of a tar stream, compressed with c (media
// type DockerLayer for gzip, OCILayerZStd for zstd).
func LayerFromTar(t testing.TB, data []byte, c Compression) v1.Layer {
	t.Helper()
	blob := Compress(t, data, c)
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil }
	var opts []tarball.LayerOption
	if c == Zstd {
		opts = append(opts, tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	}
	l, err := tarball.LayerFromOpener(opener, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TarLayer is LayerFromTar(Tar(entries)).
func TarLayer(t testing.TB, entries []Entry, c Compression) v1.Layer {
	t.Helper()
	return LayerFromTar(t, Tar(t, entries), c)
}

// FileLayer is a gzip layer with the given regular files (mode 0644)
// and their parent directories, in sorted order.
func FileLayer(t testing.TB, files map[string]string) v1.Layer {
	t.Helper()
	var names []string
	for n := range files {
		names = append(names, strings.TrimPrefix(n, "/"))
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	var entries []Entry
	for _, n := range names {
		var parents []string
		for d := path.Dir(n); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			entries = append(entries, Dir(parents[i]))
		}
		body := files[n]
		if _, ok := files[n]; !ok {
			body = files["/"+n]
		}
		entries = append(entries, File(n, 0o644, body))
	}
	return TarLayer(t, entries, Gzip)
}

var (
	busyboxOnce sync.Once
	busyboxTar  []byte
	busyboxErr  error
)

// BusyboxEntries are the entries of BusyboxLayer: /bin/busybox with the
// BusyboxApplets symlinks, /etc/passwd and /etc/group with root and
// AppUser/AppGroup, /tmp (1777), /root and /home/app (owned by app).
func BusyboxEntries(t testing.TB) []Entry {
	t.Helper()
	data, err := os.ReadFile(testutil.BusyboxPath)
	if err != nil {
		testutil.SkipOrFail(t, "busybox-static is not installed (%v); apt-get install busybox-static", err)
	}
	entries := []Entry{Dir("bin"), File("bin/busybox", 0o755, string(data))}
	for _, a := range BusyboxApplets {
		entries = append(entries, Symlink("bin/"+a, "busybox"))
	}
	tmp := Dir("tmp")
	tmp.Header.Mode = 0o1777
	home := Dir("home/app")
	home.Header.Uid, home.Header.Gid = AppUID, AppGID
	entries = append(entries,
		Dir("etc"),
		File("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"+
			"app:x:1234:2345:app:/home/app:/bin/sh\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
		File("etc/group", 0o644, "root:x:0:\nappgrp:x:2345:app\nnogroup:x:65534:\n"),
		tmp, Dir("root"), Dir("home"), home,
	)
	return entries
}

// BusyboxLayer is a gzip layer of BusyboxEntries; the same bytes (and
// digest) at every call.
func BusyboxLayer(t testing.TB) v1.Layer {
	t.Helper()
	busyboxOnce.Do(func() {
		if _, err := os.Stat(testutil.BusyboxPath); err != nil {
			busyboxErr = err
			return
		}
		busyboxTar = Tar(t, BusyboxEntries(t))
	})
	if busyboxErr != nil {
		testutil.SkipOrFail(t, "busybox-static is not installed (%v); apt-get install busybox-static", busyboxErr)
	}
	return LayerFromTar(t, busyboxTar, Gzip)
}

// HostPlatform is runtime.GOOS/GOARCH, without a variant.
func HostPlatform() v1.Platform {
	return v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
}

// Foreign platforms for multi-platform tests.
var (
	PlatformArm64   = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	PlatformS390x   = v1.Platform{OS: "linux", Architecture: "s390x"}
	PlatformPPC64le = v1.Platform{OS: "linux", Architecture: "ppc64le"}
)

// OtherPlatforms are two platforms other than this host's.
func OtherPlatforms() []v1.Platform {
	var out []v1.Platform
	for _, p := range []v1.Platform{PlatformArm64, PlatformS390x, PlatformPPC64le} {
		if p.Architecture != runtime.GOARCH && len(out) < 2 {
			out = append(out, p)
		}
	}
	return out
}

// NewImage builds an image (Docker media types) for this host's OS and
// architecture with cfg and the layers, lowest first, created at Epoch.
func NewImage(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	return NewImageFor(t, HostPlatform(), cfg, layers...)
}

// NewImageFor is NewImage for another platform.
func NewImageFor(t testing.TB, p v1.Platform, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		OS:           p.OS,
		Architecture: p.Architecture,
		Variant:      p.Variant,
		Created:      v1.Time{Time: Epoch},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		t.Fatal(err)
	}
	return img
}

// OCI turns an image's manifest and config media types into OCI ones.
func OCI(img v1.Image) v1.Image {
	return mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
}

// BusyboxImage is an image of BusyboxLayer alone, running sh by default.
func BusyboxImage(t testing.TB) v1.Image {
	t.Helper()
	return NewImage(t, v1.Config{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}, BusyboxLayer(t))
}

// PlatformFile is where PlatformIndex's images name their platform.
const PlatformFile = "platform"

// PlatformIndex builds an OCI index with one image per platform: the
// busybox layer plus a layer whose /platform file holds the platform as
// os/arch[/variant]. It returns the index and each platform's manifest
// digest, keyed the same way.
func PlatformIndex(t testing.TB, platforms ...v1.Platform) (v1.ImageIndex, map[string]string) {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	digests := map[string]string{}
	for _, p := range platforms {
		s := p.OS + "/" + p.Architecture
		if p.Variant != "" {
			s += "/" + p.Variant
		}
		img := OCI(NewImageFor(t, p, v1.Config{Cmd: []string{"/bin/cat", "/" + PlatformFile}},
			BusyboxLayer(t), FileLayer(t, map[string]string{PlatformFile: s + "\n"})))
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests[s] = d.String()
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return idx, digests
}

func (r *Registry) remoteOptions(t testing.TB) []remote.Option {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	opts := []remote.Option{remote.WithContext(ctx)}
	if r.User != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password}))
	}
	return opts
}

// Push uploads img as repoTag ("app:1") and returns its manifest digest.
func Push(t testing.TB, r *Registry, repoTag string, img v1.Image) string {
	t.Helper()
	return push(t, r, repoTag, "", img)
}

// PushIndex uploads a multi-platform index and its images as repoTag and
// returns the index digest.
func PushIndex(t testing.TB, r *Registry, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	return push(t, r, repoTag, "index ", idx)
}

// pushable is what an image and an index both are to remote.Push.
type pushable interface {
	remote.Taggable
	Digest() (v1.Hash, error)
}

func push(t testing.TB, r *Registry, repoTag, what string, x pushable) string {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Push(ref, x, r.remoteOptions(t)...); err != nil {
		t.Fatalf("pushing %s%s: %v", what, ref, err)
	}
	d, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}
