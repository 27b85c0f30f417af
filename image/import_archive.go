package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/image/layer"
	"reconciled.dev/reconciled/internal/ctxio"
)

// maxArchiveEntries bounds the entries of an oci-archive: a layout holds
// a handful of files per image.
const maxArchiveEntries = 1 << 16

// readArchive reads the images of an oci-archive or docker-archive file,
// compressed or not, using work (an empty directory) for what it must
// unpack: the layout of an oci-archive, the tar of a compressed
// docker-archive.
func (s *Store) readArchive(ctx context.Context, src, work string) ([]*importImage, error) {
	kind, err := sniffArchive(ctx, src)
	if err != nil {
		return nil, err
	}
	if kind == ociArchiveKind {
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		dec, err := layer.Decompress(f)
		if err != nil {
			return nil, err
		}
		defer dec.Close()
		dir := filepath.Join(work, "layout")
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		if err := extractLayout(ctx, dec, dir); err != nil {
			return nil, fmt.Errorf("unpacking the oci-archive: %w", err)
		}
		return s.readLayout(dir)
	}
	tarPath := src
	compressed, err := isCompressed(src)
	if err != nil {
		return nil, err
	}
	if compressed {
		// ggcr's tarball reads the archive once per file it wants: give
		// it a plain tar instead of decompressing everything each time.
		tarPath = filepath.Join(work, "docker-archive.tar")
		if err := decompressTo(ctx, src, tarPath); err != nil {
			return nil, err
		}
	}
	return readDockerArchive(tarPath)
}

type archiveKind int

const (
	ociArchiveKind archiveKind = iota
	dockerArchiveKind
)

// sniffArchive tells an oci-archive (oci-layout and index.json at the top)
// from a docker-archive (manifest.json); a docker save that has both is
// read as the layout it also is.
func sniffArchive(ctx context.Context, src string) (archiveKind, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	dec, err := layer.Decompress(f)
	if err != nil {
		return 0, err
	}
	defer dec.Close()
	tr := tar.NewReader(ctxio.Reader(ctx, dec))
	has := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("not an OCI layout directory, nor a tar archive (gzip- or zstd-compressed or not): %w", err)
		}
		if hdr.Typeflag == tar.TypeReg {
			has[path.Clean(hdr.Name)] = true
		}
	}
	switch {
	case has["oci-layout"] && has["index.json"]:
		return ociArchiveKind, nil
	case has["manifest.json"]:
		return dockerArchiveKind, nil
	}
	return 0, fmt.Errorf("neither an oci-archive (no oci-layout and index.json) nor a docker-archive (no manifest.json)")
}

// isCompressed says whether a file starts with the gzip or zstd magic
// (the formats layer.Decompress reads).
func isCompressed(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	magic := make([]byte, 4)
	n, err := io.ReadFull(f, magic)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, err
	}
	magic = magic[:n]
	return bytes.HasPrefix(magic, []byte{0x1f, 0x8b}) || bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}), nil
}

// decompressTo writes the decompressed content of src to dst (a new file),
// refusing to fill the file system.
func decompressTo(ctx context.Context, src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	dec, err := layer.Decompress(f)
	if err != nil {
		return err
	}
	defer dec.Close()
	free, err := freeBytes(filepath.Dir(dst))
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, io.LimitReader(ctxio.Reader(ctx, dec), free+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("decompressing %s: %w", src, err)
	}
	if n > free {
		return fmt.Errorf("decompressing %s: it is larger than the %d bytes free under %s", src, free, filepath.Dir(dst))
	}
	return nil
}

// freeBytes is the space left for unprivileged writers on dir's file
// system (a bound for what an import may unpack there).
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := ignoringEINTR(func() error { return unix.Statfs(dir, &st) }); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// extractLayout unpacks the tar stream r of an oci-archive into dir, an
// empty directory: regular files and directories only, every name
// relative and without "..", every write resolved inside dir (os.Root),
// no name twice, and no more bytes than the file system has free. A
// layout needs nothing else; anything else is refused.
func extractLayout(ctx context.Context, r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	free, err := freeBytes(dir)
	if err != nil {
		return err
	}
	var total int64
	tr := tar.NewReader(ctxio.Reader(ctx, r))
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if entries >= maxArchiveEntries {
			return fmt.Errorf("more than %d entries", maxArchiveEntries)
		}
		rel, err := archiveName(hdr.Name)
		if err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeXGlobalHeader:
		case tar.TypeDir:
			if rel != "." {
				if err := root.MkdirAll(rel, 0o700); err != nil {
					return fmt.Errorf("entry %q: %w", hdr.Name, err)
				}
			}
		case tar.TypeReg:
			if hdr.Size < 0 || hdr.Size > free-total {
				return fmt.Errorf("entry %q: %d bytes do not fit in the %d bytes free under %s", hdr.Name, hdr.Size, free-total, dir)
			}
			total += hdr.Size
			if rel == "." {
				return fmt.Errorf("entry %q: a file with no name", hdr.Name)
			}
			if d := path.Dir(rel); d != "." {
				if err := root.MkdirAll(d, 0o700); err != nil {
					return fmt.Errorf("entry %q: %w", hdr.Name, err)
				}
			}
			f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("entry %q: the archive holds it twice", hdr.Name)
			}
			if err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			n, err := io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			if n != hdr.Size {
				return fmt.Errorf("entry %q: %d bytes, its header says %d", hdr.Name, n, hdr.Size)
			}
		default:
			return fmt.Errorf("entry %q: type %q is not allowed in an oci-archive (regular files and directories only)", hdr.Name, string(hdr.Typeflag))
		}
	}
}

// archiveName checks an oci-archive entry's name: relative, no "..", no
// NUL. It returns the cleaned name ("." for the top).
func archiveName(n string) (string, error) {
	switch {
	case n == "":
		return "", fmt.Errorf("an entry with an empty name")
	case strings.HasPrefix(n, "/"):
		return "", fmt.Errorf("entry %q: absolute name", n)
	case strings.ContainsRune(n, 0):
		return "", fmt.Errorf("entry %q: NUL in the name", n)
	}
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("entry %q: the name leaves the archive (..)", n)
		}
	}
	return path.Clean(n), nil
}

// readDockerArchive reads the images of a docker-archive tar (`docker
// save`, tarball.Write) with ggcr, whose manifests it makes: each layer's
// digest is its file's (its gzip, for an uncompressed one). The layer
// diff IDs come from the archive's config and are checked at unpacking.
func readDockerArchive(tarPath string) ([]*importImage, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(tarPath) }
	mf, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("reading the docker-archive's manifest.json: %w", err)
	}
	if len(mf) == 0 {
		return nil, fmt.Errorf("the docker-archive's manifest.json lists no image")
	}
	var out []*importImage
	for i, d := range mf {
		var tag *name.Tag
		if len(mf) > 1 {
			if len(d.RepoTags) == 0 {
				return nil, fmt.Errorf("the docker-archive holds %d images and image %d (config %s) has no RepoTags to pick it by: save it in an archive of its own", len(mf), i+1, d.Config)
			}
			t, err := name.NewTag(d.RepoTags[0])
			if err != nil {
				return nil, fmt.Errorf("docker-archive RepoTags %q: %w", d.RepoTags[0], err)
			}
			tag = &t
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("reading docker-archive image %d: %w", i+1, err)
		}
		raw, err := img.RawManifest()
		if err != nil {
			return nil, fmt.Errorf("reading docker-archive image %d: %w", i+1, err)
		}
		sum := sha256.Sum256(raw)
		digest := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
		m, err := parseManifest(raw)
		if err != nil {
			return nil, fmt.Errorf("docker-archive image %d: %w", i+1, err)
		}
		layers, err := img.Layers()
		if err != nil {
			return nil, fmt.Errorf("docker-archive image %d: %w", i+1, err)
		}
		if len(layers) != len(m.Layers) {
			return nil, fmt.Errorf("docker-archive image %d: %d layers but the manifest made of it has %d", i+1, len(layers), len(m.Layers))
		}
		// Pair the layers with the manifest by position: asking ggcr for
		// a layer by digest would recompute the digests of those before.
		byDigest := map[v1.Hash]v1.Layer{}
		for j, l := range layers {
			byDigest[m.Layers[j].Digest] = l
		}
		cfgDigest := m.Config.Digest
		open := func(desc v1.Descriptor) (io.ReadCloser, error) {
			if desc.Digest == cfgDigest {
				b, err := img.RawConfigFile()
				if err != nil {
					return nil, err
				}
				return io.NopCloser(bytes.NewReader(b)), nil
			}
			l, ok := byDigest[desc.Digest]
			if !ok {
				return nil, fmt.Errorf("not in the archive")
			}
			return l.Compressed()
		}
		out = append(out, &importImage{digest: digest, raw: raw, manifest: m, names: slices.Clone(d.RepoTags), blobs: open})
	}
	return out, nil
}
