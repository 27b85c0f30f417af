package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Annotations of an OCI layout's index.json entries that name an image.
const (
	// AnnotationRefName is the OCI one: a tag ("1.4") or a full reference.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationContainerdName is what containerd and docker save (25 and
	// later) write beside it: always a full reference.
	AnnotationContainerdName = "io.containerd.image.name"
)

// readLayout reads the images of an OCI image layout directory. Each
// entry of index.json is an image, or an index from which the store's
// platform is picked; entries with the same name (none, or one
// annotation) that each name a platform are a multi-platform image too
// (what `layout.Write` of an index gives).
func (s *Store) readLayout(dir string) ([]*importImage, error) {
	if fi, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not an OCI image layout (no oci-layout file)", dir)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the layout's index.json: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading the layout's index.json: %w", err)
	}
	lp := layout.Path(dir)
	open := func(desc v1.Descriptor) (io.ReadCloser, error) { return lp.Blob(desc.Digest) }

	var out []*importImage
	add := func(im *importImage) {
		for _, o := range out {
			if o.digest == im.digest && o.indexDigest == im.indexDigest {
				for _, n := range im.names {
					if !slices.Contains(o.names, n) {
						o.names = append(o.names, n)
					}
				}
				return
			}
		}
		out = append(out, im)
	}
	groups := map[string][]v1.Descriptor{} // name -> image manifests
	var order []string
	for _, d := range im.Manifests {
		if err := checkDescriptor(d); err != nil {
			return nil, fmt.Errorf("index.json: %w", err)
		}
		nm := layoutName(d.Annotations)
		raw, err := readManifestBlob(open, d)
		if err != nil {
			return nil, err
		}
		isIndex, err := manifestKind(d.MediaType, raw)
		if err != nil {
			s.log.Warn("import: skipping a layout entry that is no image", "digest", d.Digest.String(), "mediaType", string(d.MediaType), "err", err)
			continue
		}
		if !isIndex {
			if _, ok := groups[nm]; !ok {
				order = append(order, nm)
			}
			groups[nm] = append(groups[nm], d)
			continue
		}
		child, err := s.pickPlatform(raw)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", d.Digest, err)
		}
		img, err := readLayoutImage(open, child)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", d.Digest, err)
		}
		img.indexDigest, img.indexRaw = d.Digest, raw
		if nm != "" {
			img.names = []string{nm}
		}
		add(img)
	}
	for _, nm := range order {
		descs := groups[nm]
		d := descs[0]
		distinct := map[v1.Hash]bool{}
		for _, x := range descs {
			distinct[x.Digest] = true
		}
		if len(distinct) > 1 {
			platformed := true
			for _, x := range descs {
				platformed = platformed && x.Platform != nil
			}
			label := "without a name"
			if nm != "" {
				label = fmt.Sprintf("named %q", nm)
			}
			if !platformed {
				return nil, fmt.Errorf("index.json lists %d different images %s, not all for a platform: cannot tell which to import", len(distinct), label)
			}
			if d, err = s.pickDescriptor(descs); err != nil {
				return nil, fmt.Errorf("index.json, images %s: %w", label, err)
			}
		}
		img, err := readLayoutImage(open, d)
		if err != nil {
			return nil, err
		}
		if nm != "" {
			img.names = []string{nm}
		}
		add(img)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the layout's index.json lists no image")
	}
	return out, nil
}

// layoutName is the name an index.json entry gives its image: the full
// reference containerd writes, else the OCI ref.name, else "".
func layoutName(ann map[string]string) string {
	if n := ann[AnnotationContainerdName]; n != "" {
		return n
	}
	return ann[AnnotationRefName]
}

// readManifestBlob reads a manifest or index blob (bounded) and checks it
// against d.
func readManifestBlob(open blobOpener, d v1.Descriptor) ([]byte, error) {
	rc, err := open(d)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", d.Digest, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", d.Digest, err)
	}
	if len(raw) > maxManifestSize {
		return nil, fmt.Errorf("manifest %s is larger than %d bytes", d.Digest, maxManifestSize)
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != d.Digest.Hex {
		return nil, fmt.Errorf("manifest %s: %w (it hashes to sha256:%s)", d.Digest, ErrDigestMismatch, got)
	}
	if d.Size != 0 && int64(len(raw)) != d.Size {
		return nil, fmt.Errorf("manifest %s: %d bytes, the index says %d", d.Digest, len(raw), d.Size)
	}
	return raw, nil
}

// readLayoutImage reads an image manifest of a layout, which must not be
// an index.
func readLayoutImage(open blobOpener, d v1.Descriptor) (*importImage, error) {
	if err := checkDescriptor(d); err != nil {
		return nil, err
	}
	raw, err := readManifestBlob(open, d)
	if err != nil {
		return nil, err
	}
	isIndex, err := manifestKind(d.MediaType, raw)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	if isIndex {
		return nil, fmt.Errorf("entry %s is an index itself; nested indexes are not supported", d.Digest)
	}
	m, err := parseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	return &importImage{digest: d.Digest, raw: raw, manifest: m, blobs: open}, nil
}
