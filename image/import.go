package image

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/ctxio"
	"reconciled.dev/reconciled/internal/imageref"
)

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
