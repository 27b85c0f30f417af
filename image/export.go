package image

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/internal/ctxio"
)

// Export writes the stored image ref (any imageref, resolved as Get
// does) to w as an oci-archive: a tar of an OCI image layout whose
// index.json names the platform manifest with the annotation
// org.opencontainers.image.ref.name set to the full normalized
// reference, and whose blobs/sha256/ holds that manifest, its config and
// its compressed layers exactly as stored, so every digest is unchanged:
// Import of the archive into another store records the same manifest
// digest. Each blob is checked against its digest while it is copied; a
// store that no longer holds one fails with ErrNotFound. The tar is the
// same bytes for the same image (fixed times, owners and modes).
//
// Returns the image exported. While it runs, no Remove deletes what it
// reads (it holds gc.lock shared, as a pull does).
func (s *Store) Export(ctx context.Context, ref string, w io.Writer) (*Image, error) {
	gc, err := lockFileContext(ctx, s.lockPath("gc.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer gc.unlock()
	img, err := s.Get(ref)
	if err != nil {
		return nil, err
	}
	if err := s.exportImage(ctx, img, w); err != nil {
		return nil, fmt.Errorf("exporting %s: %w", img.Ref, err)
	}
	return img, nil
}

// ExportFile is Export to the file path: written as path.tmp (a stale one
// is replaced), fsynced, renamed to path and the directory fsynced, so
// that path is only ever a whole archive (a reader such as another
// host's import directory never sees half of it). The file's mode is
// 0600.
func (s *Store) ExportFile(ctx context.Context, ref, path string) (*Image, error) {
	tmp := path + ".tmp"
	// A left-over temp file (a killed export) is replaced; O_EXCL with
	// O_NOFOLLOW then refuses a symlink planted under the temp name.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("removing the stale %s: %w", tmp, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	img, err := s.Export(ctx, ref, f)
	if err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	ok = true
	if err := atomicfile.SyncDirectory(filepath.Dir(path)); err != nil {
		return img, fmt.Errorf("%s is written, but its directory could not be synced: %w", path, err)
	}
	return img, nil
}

// exportImage writes img's layout as a tar stream.
func (s *Store) exportImage(ctx context.Context, img *Image, w io.Writer) error {
	digest, err := parseDigest(img.Digest)
	if err != nil {
		return err
	}
	raw, err := s.readBlob(digest)
	if err != nil {
		return err
	}
	m, err := parseManifest(raw)
	if err != nil {
		return fmt.Errorf("stored manifest %s: %w", digest, err)
	}
	mediaType := m.MediaType
	if mediaType == "" {
		mediaType = types.OCIManifestSchema1
	}
	desc := v1.Descriptor{
		MediaType:   mediaType,
		Size:        int64(len(raw)),
		Digest:      digest,
		Annotations: map[string]string{AnnotationRefName: img.Ref},
	}
	if img.Config.OS != "" && img.Config.Architecture != "" {
		desc.Platform = &v1.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests:     []v1.Descriptor{desc},
	})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: exportTime})
	}
	file := func(name string, data []byte) error {
		if err := tw.WriteHeader(fileHeader(name, int64(len(data)))); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := file("index.json", index); err != nil {
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	if err := file("blobs/sha256/"+digest.Hex, raw); err != nil {
		return err
	}
	written := map[v1.Hash]bool{digest: true}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if written[d.Digest] {
			continue // a layer listed twice is one blob
		}
		written[d.Digest] = true
		if err := s.exportBlob(ctx, tw, d); err != nil {
			return err
		}
	}
	return tw.Close()
}

// exportTime is the time of every entry of an exported archive: the same
// image gives the same bytes.
var exportTime = time.Unix(0, 0).UTC()

func fileHeader(name string, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: exportTime}
}

// exportBlob copies a stored blob into the archive, checking its size and
// digest while it streams.
func (s *Store) exportBlob(ctx context.Context, tw *tar.Writer, d v1.Descriptor) error {
	if _, err := parseDigest(d.Digest.String()); err != nil {
		return err
	}
	f, err := os.Open(s.blobPath(d.Digest))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: blob %s is missing", ErrNotFound, d.Digest)
	}
	if err != nil {
		return fmt.Errorf("reading blob %s: %w", d.Digest, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading blob %s: %w", d.Digest, err)
	}
	if fi.Size() != d.Size {
		return fmt.Errorf("stored blob %s has %d bytes, the manifest says %d (corrupt store)", d.Digest, fi.Size(), d.Size)
	}
	if err := tw.WriteHeader(fileHeader("blobs/sha256/"+d.Digest.Hex, d.Size)); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(tw, io.TeeReader(ctxio.Reader(ctx, f), h))
	if err != nil {
		return fmt.Errorf("copying blob %s: %w", d.Digest, err)
	}
	if n != d.Size {
		return fmt.Errorf("stored blob %s: read %d bytes, the manifest says %d (corrupt store)", d.Digest, n, d.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Digest.Hex {
		return fmt.Errorf("stored blob %s: %w (it hashes to sha256:%s; corrupt store)", d.Digest, ErrDigestMismatch, got)
	}
	return nil
}
