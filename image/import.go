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
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/image/layer"
	"reconciled.dev/reconciled/internal/ctxio"
	"reconciled.dev/reconciled/internal/imageref"
)

// Annotations of an OCI layout's index.json entries that name an image.
const (
	// AnnotationRefName is the OCI one: a tag ("1.4") or a full reference.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationContainerdName is what containerd and docker save (25 and
	// later) write beside it: always a full reference.
	AnnotationContainerdName = "io.containerd.image.name"
)

// maxArchiveEntries bounds the entries of an oci-archive: a layout holds
// a handful of files per image.
const maxArchiveEntries = 1 << 16

// Import stores the image(s) of src, a local file or directory, as a pull
// would, without any network: an OCI image layout directory, an
// oci-archive (a tar of a layout), or a docker-archive (`docker save`),
// each possibly gzip- or zstd-compressed (detected by magic bytes; a
// directory is a layout). Every blob is verified against its digest (and
// layer diff IDs while unpacking) exactly like a pull; nothing half-stored.
//
// name (optional, any imageref) names the image. With a tag or digest it
// names the one image src holds (it is an error if src holds several);
// a repository alone ("example.local/app") takes each image's tag from
// src. Without name, the layout's io.containerd.image.name or
// org.opencontainers.image.ref.name annotation (a full reference, or a tag
// that needs name) or the docker-archive's RepoTags are used; an image
// with no name at all is an error asking for --name. A multi-platform
// index selects the store's platform.
//
// Returns the stored images, one per recorded reference. Importing what
// is stored already changes nothing.
func (s *Store) Import(ctx context.Context, src, name string) ([]*Image, error) {
	imgs, err := s.importFrom(ctx, src, name)
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", src, err)
	}
	return imgs, nil
}

// importImage is one image found in an import source.
type importImage struct {
	digest      v1.Hash
	raw         []byte
	manifest    *v1.Manifest
	indexDigest v1.Hash // zero without an index
	indexRaw    []byte  // nil without an index
	// names are what the source calls it, as written there: layout
	// annotations or RepoTags.
	names []string
	blobs blobOpener
	// Filled in while storing.
	config *v1.ConfigFile
	refs   []string
}

// blobOpener opens a blob of an import source by its descriptor; the
// caller verifies what it reads.
type blobOpener func(desc v1.Descriptor) (io.ReadCloser, error)

func (s *Store) importFrom(ctx context.Context, src, nameArg string) ([]*Image, error) {
	start := time.Now()
	var want *imageref.Ref
	if nameArg != "" {
		r, err := imageref.Parse(nameArg)
		if err != nil {
			return nil, err
		}
		want = &r
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	// Shared, as for a pull: a Remove must not delete what this import
	// found stored and relies on.
	gc, err := lockFileContext(ctx, s.lockPath("gc.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer gc.unlock()

	var imgs []*importImage
	if fi.IsDir() {
		imgs, err = s.readLayout(src)
	} else {
		work, werr := os.MkdirTemp(s.tmpDir(), "import-")
		if werr != nil {
			return nil, werr
		}
		defer func() {
			if err := removeTree(work); err != nil {
				s.log.Warn("removing import work directory", "path", work, "err", err)
			}
		}()
		imgs, err = s.readArchive(ctx, src, work)
	}
	if err != nil {
		return nil, err
	}
	if err := nameImages(imgs, want, nameArg); err != nil {
		return nil, err
	}
	if err := s.storeImported(ctx, imgs); err != nil {
		return nil, err
	}

	recs := map[string]refRecord{}
	for _, im := range imgs {
		rec, err := s.storeManifests(im.digest, im.raw, im.indexDigest, im.indexRaw)
		if err != nil {
			return nil, err
		}
		for _, ref := range im.refs {
			recs[ref] = rec
		}
	}
	if err := s.recordRefs(recs, true); err != nil {
		return nil, err
	}
	var out []*Image
	for _, im := range imgs {
		for _, ref := range im.refs {
			img, err := s.load(ref, im.digest.String())
			if err != nil {
				return nil, err
			}
			out = append(out, img)
			s.log.Info("image imported", "ref", ref, "digest", img.Digest, "from", src,
				"layers", len(img.Layers), "duration", time.Since(start).Round(time.Millisecond))
		}
	}
	return out, nil
}

// storeImported verifies every blob the images need that is not stored
// yet into ROOT/tmp; only when all of them are good does it move them to
// blobs/ and unpack the layers (checking diff IDs). A bad blob leaves
// nothing behind.
func (s *Store) storeImported(ctx context.Context, imgs []*importImage) error {
	var mu sync.Mutex
	pending := map[string]*os.File{} // digest hex -> verified temp file
	defer func() {
		for _, f := range pending {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// receive stores desc's content from open in a temp file unless it is
	// stored or pending already.
	receive := func(ctx context.Context, desc v1.Descriptor, open blobOpener) error {
		mu.Lock()
		_, ok := pending[desc.Digest.Hex]
		mu.Unlock()
		if ok {
			return nil
		}
		if fi, err := os.Stat(s.blobPath(desc.Digest)); err == nil {
			if fi.Size() != desc.Size {
				return fmt.Errorf("blob %s: stored with %d bytes, the manifest says %d", desc.Digest, fi.Size(), desc.Size)
			}
			return nil
		}
		rc, err := open(desc)
		if err != nil {
			return fmt.Errorf("reading blob %s: %w", desc.Digest, err)
		}
		defer rc.Close()
		tmp, err := s.receive(ctxio.Reader(ctx, rc), desc, func(int64) {})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if _, ok := pending[desc.Digest.Hex]; ok {
			tmp.Close()
			return os.Remove(tmp.Name())
		}
		pending[desc.Digest.Hex] = tmp
		return nil
	}

	// Configs first (small, and needed to check the manifests), then the
	// layers, a few at a time.
	for _, im := range imgs {
		if err := receive(ctx, im.manifest.Config, im.blobs); err != nil {
			return err
		}
		var cfgJSON []byte
		var err error
		if f := pending[im.manifest.Config.Digest.Hex]; f != nil {
			cfgJSON, err = os.ReadFile(f.Name())
		} else {
			cfgJSON, err = s.readBlob(im.manifest.Config.Digest)
		}
		if err != nil {
			return err
		}
		ref := strings.Join(im.refs, ", ")
		if im.config, err = s.parseConfig(cfgJSON, im.manifest, im.digest, ref); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(pullJobs)
	for _, im := range imgs {
		for _, l := range im.manifest.Layers {
			g.Go(func() error { return receive(gctx, l, im.blobs) })
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}

	for _, hexName := range slices.Sorted(maps.Keys(pending)) {
		tmp := pending[hexName]
		if err := s.commit(tmp, filepath.Join(s.blobDir(), hexName)); err != nil {
			return fmt.Errorf("storing blob sha256:%s: %w", hexName, err)
		}
		delete(pending, hexName)
	}

	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(pullJobs)
	for _, im := range imgs {
		for i, l := range im.manifest.Layers {
			diffID := im.config.RootFS.DiffIDs[i]
			g.Go(func() error { return s.unpackLayer(gctx, l, diffID) })
		}
	}
	return g.Wait()
}

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

// nameImages sets each image's refs (normalized, sorted) from want (the
// --name, parsed from arg) or the names the source gives it, and checks
// that no reference names two images.
func nameImages(imgs []*importImage, want *imageref.Ref, arg string) error {
	explicit := want != nil && (want.Digest != "" || hasTag(arg))
	if explicit && len(imgs) > 1 {
		var ds []string
		for _, im := range imgs {
			ds = append(ds, im.digest.String())
		}
		return fmt.Errorf("the source holds %d images (%s) and --name %s names one: give a repository alone to keep their tags, or import them one by one", len(imgs), strings.Join(ds, ", "), arg)
	}
	owner := map[string]*importImage{}
	for _, im := range imgs {
		var refs []string
		switch {
		case explicit:
			if want.Digest != "" && want.Digest != im.digest.String() && want.Digest != im.indexDigest.String() {
				return fmt.Errorf("--name %s: the image's digest is %s", arg, im.digest)
			}
			refs = []string{want.String()}
		case want != nil:
			for _, n := range im.names {
				tag, err := sourceTag(n)
				if err != nil {
					return err
				}
				if tag != "" {
					refs = append(refs, imageref.Ref{Registry: want.Registry, Repository: want.Repository, Tag: tag}.String())
				}
			}
			if len(refs) == 0 {
				refs = []string{want.String()} // the default tag
			}
		default:
			if len(im.names) == 0 {
				return fmt.Errorf("image %s has no name in the source: give one with --name REF", im.digest)
			}
			for _, n := range im.names {
				if isBareTag(n) {
					return fmt.Errorf("image %s is named only by the tag %q in the source: give --name REPOSITORY (or --name REPOSITORY:%s)", im.digest, n, n)
				}
				norm, err := imageref.Normalize(n)
				if err != nil {
					return fmt.Errorf("image %s: the source's name: %w", im.digest, err)
				}
				refs = append(refs, norm)
			}
		}
		sort.Strings(refs)
		refs = slices.Compact(refs)
		for _, r := range refs {
			if o := owner[r]; o != nil && o != im {
				return fmt.Errorf("%s would name two images (%s and %s)", r, o.digest, im.digest)
			}
			owner[r] = im
		}
		im.refs = refs
	}
	return nil
}

// hasTag says whether a reference as written has a tag (imageref gives
// one without a tag DefaultTag).
func hasTag(ref string) bool {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	return strings.LastIndexByte(ref, ':') > strings.LastIndexByte(ref, '/')
}

// isBareTag says whether a source's name is a tag alone ("1.4"), which
// needs a repository, rather than a reference.
func isBareTag(n string) bool { return !strings.ContainsAny(n, "/:@") }

// sourceTag is the tag of a source's name: the name itself for a bare
// tag, the reference's tag otherwise ("" for one by digest alone).
func sourceTag(n string) (string, error) {
	if isBareTag(n) {
		if _, err := imageref.Parse("x:" + n); err != nil {
			return "", fmt.Errorf("the source's tag %q: %w", n, err)
		}
		return n, nil
	}
	r, err := imageref.Parse(n)
	if err != nil {
		return "", fmt.Errorf("the source's name: %w", err)
	}
	if r.Digest != "" && !hasTag(n) {
		return "", nil
	}
	return r.Tag, nil
}
