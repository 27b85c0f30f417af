package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is every entry's modification time.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// entry is one file of the busybox layer, which is also written out as
// the plain root directory of the warm comparison.
type entry struct {
	name   string
	mode   int64
	kind   byte // tar.TypeDir, TypeReg, TypeSymlink
	body   []byte
	target string
}

// busyboxEntries are /bin/busybox and its applets, the mount points a
// container needs (/sig for the signal FIFO's bind mount among them: the
// plain root is mounted read-only, so nothing can create it there), /tmp,
// and an /etc/passwd and /etc/group with root.
func busyboxEntries(busybox string) ([]entry, error) {
	data, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("reading busybox (apt-get install busybox-static): %w", err)
	}
	es := []entry{{name: "bin", kind: tar.TypeDir, mode: 0o755}, {name: "bin/busybox", kind: tar.TypeReg, mode: 0o755, body: data}}
	for _, a := range []string{"sh", "echo", "sleep", "cat", "ls", "true"} {
		es = append(es, entry{name: "bin/" + a, kind: tar.TypeSymlink, mode: 0o777, target: "busybox"})
	}
	for _, d := range []string{"dev", "proc", "sys", "etc", "root", "sig"} {
		es = append(es, entry{name: d, kind: tar.TypeDir, mode: 0o755})
	}
	es = append(es,
		entry{name: "tmp", kind: tar.TypeDir, mode: 0o1777},
		entry{name: "etc/passwd", kind: tar.TypeReg, mode: 0o644, body: []byte("root:x:0:0:root:/root:/bin/sh\n")},
		entry{name: "etc/group", kind: tar.TypeReg, mode: 0o644, body: []byte("root:x:0:\n")},
	)
	return es, nil
}

// materialize writes entries under dir, as the layer's unpacking would.
func materialize(dir string, es []entry) error {
	for _, e := range es {
		p := filepath.Join(dir, e.name)
		var err error
		switch e.kind {
		case tar.TypeDir:
			if err = os.MkdirAll(p, 0o755); err == nil {
				err = os.Chmod(p, os.FileMode(e.mode&0o777)|modeBits(e.mode))
			}
		case tar.TypeReg:
			if err = os.WriteFile(p, e.body, 0o600); err == nil {
				err = os.Chmod(p, os.FileMode(e.mode&0o777))
			}
		case tar.TypeSymlink:
			err = os.Symlink(e.target, p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func modeBits(m int64) os.FileMode {
	if m&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

// writeLayer writes a gzip layer file (BestSpeed: the random layers do
// not compress anyway) and returns its compressed size.
func writeLayer(path string, write func(*tar.Writer) error) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		f.Close()
		return 0, err
	}
	tw := tar.NewWriter(zw)
	err = write(tw)
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("writing layer %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func tarEntries(es []entry) func(*tar.Writer) error {
	return func(tw *tar.Writer) error {
		for _, e := range es {
			h := &tar.Header{Typeflag: e.kind, Name: e.name, Mode: e.mode, ModTime: epoch, Linkname: e.target, Size: int64(len(e.body))}
			if e.kind == tar.TypeDir {
				h.Name += "/"
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if len(e.body) > 0 {
				if _, err := tw.Write(e.body); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// randomFile is a tar of one file data/NAME of size pseudo-random
// (incompressible) bytes.
func randomFile(name string, size int64, seed uint64) func(*tar.Writer) error {
	return func(tw *tar.Writer) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "data/", Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "data/" + name, Mode: 0o644, ModTime: epoch, Size: size}); err != nil {
			return err
		}
		var s [32]byte
		for i := range 8 {
			s[i] = byte(seed >> (8 * i))
		}
		_, err := io.CopyN(tw, rand.NewChaCha8(s), size)
		return err
	}
}

// builtImage says what was pushed.
type builtImage struct {
	ref        string // registry address + "/" + repo:tag
	repo, tag  string
	layers     int
	compressed int64 // bytes, all layers
	busybox    int64 // compressed bytes of the busybox layer
	// What the registry serves, as pushed: the manifest's digest and
	// size, the config blob and each layer blob.
	digest       string
	manifestSize int64
	config       v1.Descriptor
	layerBlobs   []v1.Descriptor
}

// bytes is the whole image as a pull receives it: manifest, config and
// layer blobs.
func (b builtImage) bytes() int64 { return b.manifestSize + b.config.Size + b.compressed }

// largestLayer is the descriptor of the biggest layer blob.
func (b builtImage) largestLayer() v1.Descriptor {
	var d v1.Descriptor
	for _, l := range b.layerBlobs {
		if l.Size > d.Size {
			d = l
		}
	}
	return d
}

// buildAndPush writes the busybox layer and nRandom layers of layerSize
// random bytes (each its own content) under dir, and pushes them as one
// image, repo:tag, to the registry at addr.
func buildAndPush(ctx context.Context, dir, addr, repoTag string, es []entry, nRandom int, layerSize int64) (builtImage, error) {
	out := builtImage{ref: addr + "/" + repoTag}
	var ok bool
	if out.repo, out.tag, ok = strings.Cut(repoTag, ":"); !ok {
		return out, fmt.Errorf("%s: no tag", repoTag)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return out, err
	}
	var layers []v1.Layer
	add := func(path string, write func(*tar.Writer) error) (int64, error) {
		size, err := writeLayer(path, write)
		if err != nil {
			return 0, err
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return os.Open(path) })
		if err != nil {
			return 0, err
		}
		layers = append(layers, l)
		out.compressed += size
		return size, nil
	}
	var err error
	if out.busybox, err = add(filepath.Join(dir, "busybox.tar.gz"), tarEntries(es)); err != nil {
		return out, err
	}
	seed := uint64(time.Now().UnixNano())
	for i := range nRandom {
		if _, err := add(filepath.Join(dir, fmt.Sprintf("random-%d.tar.gz", i)),
			randomFile(fmt.Sprintf("blob-%d", i), layerSize, seed+uint64(i))); err != nil {
			return out, err
		}
	}
	out.layers = len(layers)
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		OS:           "linux",
		Architecture: goruntime.GOARCH,
		Created:      v1.Time{Time: epoch},
		Config:       v1.Config{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}},
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return out, err
	}
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		return out, err
	}
	ref, err := name.ParseReference(out.ref, name.Insecure)
	if err != nil {
		return out, err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return out, fmt.Errorf("pushing %s: %w", ref, err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return out, err
	}
	m, err := img.Manifest()
	if err != nil {
		return out, err
	}
	d, err := img.Digest()
	if err != nil {
		return out, err
	}
	out.digest, out.manifestSize, out.config, out.layerBlobs = d.String(), int64(len(raw)), m.Config, m.Layers
	return out, nil
}
