package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/image/layer"
	"reconciled.dev/reconciled/internal/imageref"
)

// Progress is a pull's progress in bytes of blobs (config and layers, their
// compressed sizes from the manifest). Blobs already stored count as done
// from the start.
type Progress struct{ Done, Total int64 }

// progressInterval is the least time between two progress calls.
const progressInterval = 100 * time.Millisecond

// maxManifestSize bounds what is read of a manifest or index.
const maxManifestSize = 4 << 20

// pullJobs is how many layers an import stores and unpacks at once (a
// pull: Options.PullConcurrency).
const pullJobs = 3

var manifestTypes = []types.MediaType{
	types.OCIManifestSchema1,
	types.OCIImageIndex,
	types.DockerManifestSchema2,
	types.DockerManifestList,
}

// Pull resolves ref at its registry and stores the image: it fetches each
// blob not stored yet (verified while streaming), unpacks each layer not
// unpacked yet (verified against the config's diff ID), and only then
// records ref. From a multi-platform index it picks Options.Platform.
// It refuses (ErrNoSpace) a pull whose blobs and unpacked layers would not
// fit; a blob fetch that fails for a reason that may pass is retried and
// resumes from the bytes received, as does the next pull after a
// cancelled or killed one (resume.go).
// progress may be nil; it is called from one goroutine at a time, at most
// every 100 ms and once at the end.
func (s *Store) Pull(ctx context.Context, ref string, progress func(Progress)) (*Image, error) {
	r, err := imageref.Parse(ref)
	if err != nil {
		return nil, err
	}
	norm := r.String()
	img, err := s.pull(ctx, r, progress)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", norm, err)
	}
	return img, nil
}

func (s *Store) pull(ctx context.Context, r imageref.Ref, progress func(Progress)) (*Image, error) {
	start := time.Now()
	norm := r.String()
	// Shared: a Remove (exclusive) must not delete what this pull found
	// stored and relies on.
	gc, err := lockFileContext(ctx, s.lockPath("gc.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer gc.unlock()

	s.cleanPartials(time.Now())

	var rc *registryClient
	err = s.retry(ctx, "connecting to "+r.Registry, func() (err error) {
		rc, err = s.connect(ctx, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	ident := r.Tag
	if r.Digest != "" {
		ident = r.Digest
	}
	raw, digest, isIndex, err := s.manifest(ctx, rc, ident)
	if err != nil {
		return nil, err
	}
	var indexRaw []byte
	var indexDigest v1.Hash
	if isIndex {
		child, err := s.pickPlatform(raw)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", digest, err)
		}
		indexRaw, indexDigest = raw, digest
		raw, digest, isIndex, err = s.manifest(ctx, rc, child.Digest.String())
		if err != nil {
			return nil, err
		}
		if isIndex {
			return nil, fmt.Errorf("index %s: entry %s for %s is an index itself; nested indexes are not supported", indexDigest, digest, platformString(s.platform))
		}
	}
	m, err := parseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}

	if err := s.checkSpace(m, int64(len(raw)+len(indexRaw))); err != nil {
		return nil, err
	}

	total := m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	rep := startReporter(progress, total)
	defer rep.finish()

	if err := s.fetchBlob(ctx, rc, m.Config, &rep.done); err != nil {
		return nil, err
	}
	cfgJSON, err := s.readBlob(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	cfg, err := s.parseConfig(cfgJSON, m, digest, norm)
	if err != nil {
		return nil, err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.fetch.concurrency())
	for i, l := range m.Layers {
		diffID := cfg.RootFS.DiffIDs[i]
		g.Go(func() error {
			if err := s.fetchBlob(gctx, rc, l, &rep.done); err != nil {
				return err
			}
			return s.unpackLayer(gctx, l, diffID)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	rec, err := s.storeManifests(digest, raw, indexDigest, indexRaw)
	if err != nil {
		return nil, err
	}
	if err := s.recordRefs(map[string]refRecord{norm: rec}, false); err != nil {
		return nil, err
	}
	img, err := s.load(norm, rec.Digest)
	if err != nil {
		return nil, err
	}
	s.log.Info("image pulled", "ref", norm, "digest", rec.Digest, "layers", len(m.Layers),
		"bytes", total, "duration", time.Since(start).Round(time.Millisecond))
	return img, nil
}

// parseConfig parses an image's config blob and checks it against its
// manifest (digest): one diff ID per layer. A platform other than the
// store's is logged, not refused.
func (s *Store) parseConfig(cfgJSON []byte, m *v1.Manifest, digest v1.Hash, ref string) (*v1.ConfigFile, error) {
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgJSON))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("manifest %s lists %d layers but its config has %d diff IDs", digest, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	if cfg.OS != "" && (cfg.OS != s.platform.OS || cfg.Architecture != s.platform.Architecture) {
		s.log.Warn("image platform differs from the requested one", "ref", ref,
			"image", cfg.OS+"/"+cfg.Architecture, "want", platformString(s.platform))
	}
	return cfg, nil
}

// storeManifests writes an image's manifest (digest, raw) and the index it
// was picked from (indexRaw nil if none) as blobs, once its config and
// layers are stored, and returns the record that names them.
func (s *Store) storeManifests(digest v1.Hash, raw []byte, indexDigest v1.Hash, indexRaw []byte) (refRecord, error) {
	if err := s.writeBlob(digest, raw); err != nil {
		return refRecord{}, err
	}
	rec := refRecord{Digest: digest.String(), Pulled: time.Now().UTC()}
	if indexRaw != nil {
		if err := s.writeBlob(indexDigest, indexRaw); err != nil {
			return refRecord{}, err
		}
		rec.Index = indexDigest.String()
	}
	return rec, nil
}

// errRefsUnchanged aborts an updateRefs that would write what is there.
var errRefsUnchanged = errors.New("references unchanged")

// recordRefs records each reference (normalized) with its record, in one
// rewrite of refs.json, keeping a recorded reference's LastUsed. With
// keepSame, a reference already recorded with the same manifest and
// index digests keeps its record as it is (its Pulled time too), and
// refs.json is not rewritten when nothing changes.
func (s *Store) recordRefs(recs map[string]refRecord, keepSame bool) error {
	// Every blob and layer the references need, and their renames into
	// place, on disk before a reference names them.
	if err := s.synced.sync(s.root); err != nil {
		return err
	}
	err := s.updateRefs(func(refs map[string]refRecord) error {
		changed := false
		for ref, rec := range recs {
			old, ok := refs[ref]
			if ok && keepSame && old.Digest == rec.Digest && old.Index == rec.Index {
				continue
			}
			if ok {
				rec.LastUsed = old.LastUsed
			}
			refs[ref] = rec
			changed = true
		}
		if !changed && keepSame {
			return errRefsUnchanged
		}
		return nil
	})
	if errors.Is(err, errRefsUnchanged) {
		return nil
	}
	return err
}

// registryClient reaches one repository with an authenticated transport.
type registryClient struct {
	client *http.Client
	repo   name.Repository
}

// connect resolves credentials and the scheme for r's registry. Plain HTTP
// is allowed only where imageref says so or Options.Insecure lists the
// registry; the transport refuses it for any other host (token realms and
// redirects included).
func (s *Store) connect(ctx context.Context, r imageref.Ref) (*registryClient, error) {
	var nopts []name.Option
	if r.Insecure() || plainHTTPAllowed(r.Registry, s.insecure) {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(r.Name(), nopts...)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", r.Name(), err)
	}
	auth, err := configKeychain{path: s.regConfig}.Resolve(repo.Registry)
	if err != nil {
		return nil, err
	}
	base := transport.NewRetry(httpGuard{inner: s.transport, insecure: s.insecure})
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
			return nil, fmt.Errorf("registry %s: %w; it answers plain HTTP, but HTTPS is required unless the registry is listed as insecure (localhost always may use HTTP)", r.Registry, err)
		}
		return nil, fmt.Errorf("registry %s: %w", r.Registry, err)
	}
	return &registryClient{client: &http.Client{Transport: rt}, repo: repo}, nil
}

// url is /v2/<repo>/<kind>/<ident> at the registry.
func (rc *registryClient) url(kind, ident string) string {
	return fmt.Sprintf("%s://%s/v2/%s/%s/%s", rc.repo.Scheme(), rc.repo.RegistryStr(), rc.repo.RepositoryStr(), kind, ident)
}

// get requests /v2/<repo>/<kind>/<ident>; a status other than 200 is an
// error (a *transport.Error with the registry's message).
func (rc *registryClient) get(ctx context.Context, kind, ident string, accept []types.MediaType) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rc.url(kind, ident), nil)
	if err != nil {
		return nil, err
	}
	if len(accept) > 0 {
		var as []string
		for _, a := range accept {
			as = append(as, string(a))
		}
		req.Header.Set("Accept", strings.Join(as, ", "))
	}
	resp, err := rc.client.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// retry calls fn, retried as s.fetch.retry says (what is the thing
// tried, for the log).
func (s *Store) retry(ctx context.Context, what string, fn func() error) error {
	return s.fetch.retry.do(ctx, func() (int64, error) { return 0, fn() }, func(err error, failures int, wait time.Duration) {
		s.log.Warn("failed; retrying", "what", what, "failures", failures, "wait", wait.Round(time.Millisecond), "err", err)
	})
}

// manifest is rc.manifest, retried.
func (s *Store) manifest(ctx context.Context, rc *registryClient, ident string) (raw []byte, digest v1.Hash, isIndex bool, err error) {
	err = s.retry(ctx, "fetching manifest "+ident, func() (err error) {
		raw, digest, isIndex, err = rc.manifest(ctx, ident)
		return err
	})
	return raw, digest, isIndex, err
}

// manifest fetches a manifest or index by tag or digest. By digest, the
// content must hash to it.
func (rc *registryClient) manifest(ctx context.Context, ident string) (raw []byte, digest v1.Hash, isIndex bool, err error) {
	resp, err := rc.get(ctx, "manifests", ident, manifestTypes)
	if err != nil {
		return nil, v1.Hash{}, false, fmt.Errorf("fetching manifest %s: %w", ident, err)
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(io.LimitReader(transferReader{resp.Body}, maxManifestSize+1))
	if err != nil {
		return nil, v1.Hash{}, false, fmt.Errorf("fetching manifest %s: %w", ident, err)
	}
	if len(raw) > maxManifestSize {
		return nil, v1.Hash{}, false, fmt.Errorf("manifest %s is larger than %d bytes", ident, maxManifestSize)
	}
	sum := sha256.Sum256(raw)
	digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if strings.HasPrefix(ident, "sha256:") && digest.String() != ident {
		return nil, v1.Hash{}, false, fmt.Errorf("manifest %s: %w (got %s)", ident, ErrDigestMismatch, digest)
	}
	isIndex, err = manifestKind(types.MediaType(resp.Header.Get("Content-Type")), raw)
	if err != nil {
		return nil, v1.Hash{}, false, fmt.Errorf("manifest %s: %w", ident, err)
	}
	return raw, digest, isIndex, nil
}

// manifestKind tells an index from an image manifest, by the body's
// mediaType, else the Content-Type, else the fields present.
func manifestKind(contentType types.MediaType, raw []byte) (isIndex bool, err error) {
	var probe struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     types.MediaType   `json:"mediaType"`
		Manifests     []json.RawMessage `json:"manifests"`
		Layers        []json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return false, fmt.Errorf("not JSON: %w", err)
	}
	mt := probe.MediaType
	if mt == "" {
		mt = types.MediaType(strings.TrimSpace(strings.Split(string(contentType), ";")[0]))
	}
	switch mt {
	case types.OCIImageIndex, types.DockerManifestList:
		return true, nil
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		return false, nil
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		return false, fmt.Errorf("docker schema 1 manifests are not supported")
	}
	if probe.SchemaVersion == 2 && probe.Manifests != nil {
		return true, nil
	}
	if probe.SchemaVersion == 2 && probe.Layers != nil {
		return false, nil
	}
	return false, fmt.Errorf("unsupported manifest media type %q", mt)
}

// layerTypes are the layer media types that Pull unpacks.
var layerTypes = map[types.MediaType]bool{
	types.DockerLayer:             true,
	types.DockerUncompressedLayer: true,
	types.OCILayer:                true,
	types.OCILayerZStd:            true,
	types.OCIUncompressedLayer:    true,
}

// parseManifest parses an image manifest and checks that it describes a
// container image whose layers can be fetched and unpacked.
func parseManifest(raw []byte) (*v1.Manifest, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	switch m.Config.MediaType {
	case types.DockerConfigJSON, types.OCIConfigJSON:
	default:
		return nil, fmt.Errorf("not a container image: config media type %q", m.Config.MediaType)
	}
	if err := checkDescriptor(m.Config); err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		if !layerTypes[l.MediaType] {
			return nil, fmt.Errorf("layer %s: unsupported media type %q", l.Digest, l.MediaType)
		}
		if len(l.URLs) > 0 {
			return nil, fmt.Errorf("layer %s: foreign layers (fetched from URLs) are not supported", l.Digest)
		}
		if err := checkDescriptor(l); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func checkDescriptor(d v1.Descriptor) error {
	if _, err := parseDigest(d.Digest.String()); err != nil {
		return err
	}
	if d.Size < 0 {
		return fmt.Errorf("blob %s: negative size %d", d.Digest, d.Size)
	}
	return nil
}

// pickPlatform returns the index entry for s.platform.
func (s *Store) pickPlatform(raw []byte) (v1.Descriptor, error) {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, err
	}
	return s.pickDescriptor(idx.Manifests)
}

// pickDescriptor returns the entry of an index's manifests that fits
// s.platform best.
func (s *Store) pickDescriptor(manifests []v1.Descriptor) (v1.Descriptor, error) {
	best, bestScore := -1, 0
	var have []string
	for i, m := range manifests {
		if m.Platform != nil {
			have = append(have, platformString(*m.Platform))
		}
		if sc := platformScore(s.platform, m.Platform); sc > bestScore {
			best, bestScore = i, sc
		}
	}
	if best < 0 {
		return v1.Descriptor{}, fmt.Errorf("no manifest for %s (the index has %s)", platformString(s.platform), strings.Join(have, ", "))
	}
	return manifests[best], nil
}

// fetchBlob makes sure the blob desc names is stored, fetching it once
// however many pulls in this process want it at the same time (download,
// in resume.go). sink counts its bytes.
func (s *Store) fetchBlob(ctx context.Context, rc *registryClient, desc v1.Descriptor, sink *atomic.Int64) error {
	return s.blobs.do(ctx, desc.Digest.String(), sink, func(ctx context.Context, add func(int64)) error {
		return s.download(ctx, rc, desc, add)
	})
}

// receive copies the blob desc names from r into a new file in ROOT/tmp,
// checking its size and digest on the way (add counts the bytes), and
// returns that file, open, not yet synced: the caller commits it or
// closes and removes it. On any failure nothing is left in ROOT/tmp.
func (s *Store) receive(r io.Reader, desc v1.Descriptor, add func(int64)) (*os.File, error) {
	tmp, err := os.CreateTemp(s.tmpDir(), "blob-"+desc.Digest.Hex[:12]+"-")
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", desc.Digest, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h, addWriter(add)), io.LimitReader(r, desc.Size+1))
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", desc.Digest, err)
	}
	if n != desc.Size {
		return nil, fmt.Errorf("blob %s: got %d bytes or more, the manifest says %d", desc.Digest, n, desc.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != desc.Digest.Hex {
		return nil, fmt.Errorf("blob %s: %w (it hashes to sha256:%s)", desc.Digest, ErrDigestMismatch, got)
	}
	ok = true
	return tmp, nil
}

// addWriter counts what is written through it.
type addWriter func(int64)

func (a addWriter) Write(p []byte) (int, error) {
	a(int64(len(p)))
	return len(p), nil
}

// commit fsyncs and closes tmp and renames it to final, unless final
// exists (another process stored the same verified content first): then
// tmp is deleted.
func (s *Store) commit(tmp *os.File, final string) error {
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return publish(tmp.Name(), final)
}

// publish renames tmp, a complete and verified file, to final, unless
// final exists (the same content stored first): then tmp is deleted. The
// rename is made durable by recordRefs' sync, before a reference needs the
// blob; a rename lost in a crash only fetches it again.
func publish(tmp, final string) error {
	if err := renameNoReplace(tmp, final); err != nil {
		if !isExist(err) {
			return err
		}
		return os.Remove(tmp)
	}
	return nil
}

// writeBlob stores data (a manifest or index already checked against its
// digest) as a blob.
func (s *Store) writeBlob(h v1.Hash, data []byte) error {
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != h.Hex {
		return fmt.Errorf("blob %s: %w", h, ErrDigestMismatch)
	}
	final := s.blobPath(h)
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	tmp, err := os.CreateTemp(s.tmpDir(), "blob-"+h.Hex[:12]+"-")
	if err != nil {
		return fmt.Errorf("storing blob %s: %w", h, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("storing blob %s: %w", h, err)
	}
	if err := s.commit(tmp, final); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("storing blob %s: %w", h, err)
	}
	return nil
}

// unpackLayer makes sure the layer with diffID is unpacked in
// layers/sha256/<hex>, from the stored blob desc: once per process at a
// time, into layers/tmp-*, checking the uncompressed stream against
// diffID, then renamed into place.
func (s *Store) unpackLayer(ctx context.Context, desc v1.Descriptor, diffID v1.Hash) error {
	return s.layers.do(ctx, diffID.String(), nil, func(ctx context.Context, _ func(int64)) error {
		final := s.layerPath(diffID)
		if fi, err := os.Lstat(final); err == nil && fi.IsDir() {
			return nil
		}
		start := time.Now()
		if err := s.unpackInto(ctx, desc, diffID, final); err != nil {
			return fmt.Errorf("layer %s (diff ID %s): %w", desc.Digest, diffID, err)
		}
		s.log.Debug("layer unpacked", "digest", desc.Digest.String(), "diffID", diffID.String(),
			"duration", time.Since(start).Round(time.Millisecond))
		return nil
	})
}

func (s *Store) unpackInto(ctx context.Context, desc v1.Descriptor, diffID v1.Hash, final string) error {
	tmp, err := os.MkdirTemp(s.layersTop(), "tmp-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			if err := removeTree(tmp); err != nil {
				s.log.Warn("removing a failed layer", "path", tmp, "err", err)
			}
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	f, err := os.Open(s.blobPath(desc.Digest))
	if err != nil {
		return err
	}
	defer f.Close()
	dec, err := layer.Decompress(f)
	if err != nil {
		return fmt.Errorf("decompressing: %w", err)
	}
	defer dec.Close()
	h := sha256.New()
	tee := io.TeeReader(dec, h)
	if err := layer.Unpack(ctx, tee, tmp); err != nil {
		return fmt.Errorf("unpacking: %w", err)
	}
	// The tar reader may stop at the end-of-archive marker: the diff ID
	// covers the whole stream.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return fmt.Errorf("decompressing: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != diffID.Hex {
		return fmt.Errorf("uncompressed content %w: it hashes to sha256:%s, the config's diff ID is %s", ErrDigestMismatch, got, diffID)
	}
	// The layer's files on disk before its name says it is whole; the
	// rename itself is made durable by recordRefs' sync, before anything
	// refers to it (a rename lost in a crash only unpacks it again).
	if err := s.synced.sync(tmp); err != nil {
		return err
	}
	if err := renameNoReplace(tmp, final); err != nil {
		if !isExist(err) {
			return err
		}
		// Another process won; ours is removed by the deferred call.
		return nil
	}
	done = true
	return nil
}

// reporter calls a progress function at most every progressInterval while
// the byte count changes, and once at the end, from one goroutine at a
// time.
type reporter struct {
	done  atomic.Int64
	total int64
	fn    func(Progress)
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

func startReporter(fn func(Progress), total int64) *reporter {
	r := &reporter{total: total, fn: fn, stop: make(chan struct{})}
	if fn == nil {
		return r
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		last := int64(-1)
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				if d := r.done.Load(); d != last {
					last = d
					r.fn(Progress{Done: min(d, r.total), Total: r.total})
				}
			}
		}
	}()
	return r
}

func (r *reporter) finish() {
	r.once.Do(func() {
		close(r.stop)
		r.wg.Wait()
		if r.fn != nil {
			r.fn(Progress{Done: min(r.done.Load(), r.total), Total: r.total})
		}
	})
}
