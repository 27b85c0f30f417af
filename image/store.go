package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/internal/imageref"
)

// Defaults of Options.
const (
	DefaultRoot           = "/var/lib/reconciled/images"
	DefaultRegistryConfig = "/root/.docker/config.json"
)

// ErrNotFound is wrapped when a reference is not recorded in the store, or
// something it needs (manifest, config, an unpacked layer) is missing.
var ErrNotFound = errors.New("image not found in the store")

// ErrDigestMismatch is wrapped when fetched content does not hash to the
// digest that names it (a blob, a manifest, or a layer's diff ID).
var ErrDigestMismatch = errors.New("content does not match its digest")

// Options configures a Store.
type Options struct {
	// Root is where everything is kept (see the package doc); DefaultRoot
	// when empty.
	Root string
	// Insecure lists registries (host, meaning any port, or host:port)
	// that may be reached over plain HTTP, besides localhost, 127.0.0.1
	// and [::1], which always may.
	Insecure []string
	// RegistryConfig is a docker config.json with auths and credential
	// helpers (credsStore, credHelpers); DefaultRegistryConfig when empty.
	// A missing file means anonymous pulls.
	RegistryConfig string
	// Platform is the one picked from multi-platform indexes; nil means
	// HostPlatform().
	Platform *v1.Platform
	// Logger; nil discards.
	Logger *slog.Logger
	// PullConcurrency is how many blobs the store fetches at once, all
	// its pulls together; DefaultPullConcurrency when 0 or less.
	PullConcurrency int
	// PullRate caps the store's download rate in bytes per second, shared
	// by all its blob fetches (a token bucket); 0 or less: unlimited.
	PullRate int64
}

// Store is the image store at one root. Its methods may be called
// concurrently, and several processes may open the same root.
type Store struct {
	root      string
	insecure  []string
	regConfig string
	platform  v1.Platform
	log       *slog.Logger
	transport http.RoundTripper
	blobs     flight  // key: blob digest
	layers    flight  // key: diff ID
	fetch     fetcher // fetch slots, rate limit, retries (fetch.go)
	synced    groupSync
}

// staleAge is how old a temp entry must be before Open deletes it as left
// over by a killed process.
const staleAge = time.Hour

// Open creates the root (0700) and its subdirectories if missing, deletes
// stale temp entries, and returns the store.
func Open(opts Options) (*Store, error) {
	s := &Store{
		root:      opts.Root,
		insecure:  opts.Insecure,
		regConfig: opts.RegistryConfig,
		log:       opts.Logger,
		fetch:     newFetcher(opts.PullConcurrency, opts.PullRate),
	}
	if s.root == "" {
		s.root = DefaultRoot
	}
	if !filepath.IsAbs(s.root) {
		abs, err := filepath.Abs(s.root)
		if err != nil {
			return nil, fmt.Errorf("image root %s: %w", s.root, err)
		}
		s.root = abs
	}
	s.root = filepath.Clean(s.root)
	if s.regConfig == "" {
		s.regConfig = DefaultRegistryConfig
	}
	if opts.Platform != nil {
		s.platform = *opts.Platform
	} else {
		s.platform = HostPlatform()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if t, ok := remote.DefaultTransport.(*http.Transport); ok {
		s.transport = t.Clone()
	} else {
		s.transport = remote.DefaultTransport
	}
	if err := os.MkdirAll(s.root, 0o700); err != nil {
		return nil, fmt.Errorf("creating image root: %w", err)
	}
	for _, d := range []string{s.blobDir(), s.layerDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating image store: %w", err)
		}
	}
	s.cleanStale(time.Now())
	return s, nil
}

func (s *Store) blobDir() string  { return filepath.Join(s.root, "blobs", "sha256") }
func (s *Store) layerDir() string { return filepath.Join(s.root, "layers", "sha256") }
func (s *Store) layersTop() string {
	return filepath.Join(s.root, "layers")
}
func (s *Store) tmpDir() string                  { return filepath.Join(s.root, "tmp") }
func (s *Store) blobPath(h v1.Hash) string       { return filepath.Join(s.blobDir(), h.Hex) }
func (s *Store) layerPath(diffID v1.Hash) string { return filepath.Join(s.layerDir(), diffID.Hex) }
func (s *Store) lockPath(name string) string     { return filepath.Join(s.root, name) }
func (s *Store) refsLock() (fileLock, error)     { return lockFile(s.lockPath("refs.lock"), unix.LOCK_EX) }
func (s *Store) gcLockExclusive() (fileLock, error) {
	return lockFile(s.lockPath("gc.lock"), unix.LOCK_EX)
}

// wait returns when no fetch or unpack started by this store runs any
// more (one whose callers all gave up ends soon after).
func (s *Store) wait() {
	s.blobs.wg.Wait()
	s.layers.wg.Wait()
}

// cleanStale deletes temp entries older than staleAge: blobs in ROOT/tmp,
// ROOT/layers/tmp-* and rm-*. Failures are logged: they cost space only.
func (s *Store) cleanStale(now time.Time) {
	clean := func(dir string, match func(string) bool) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			s.log.Warn("listing temp files", "dir", dir, "err", err)
			return
		}
		for _, e := range entries {
			if !match(e.Name()) {
				continue
			}
			info, err := e.Info()
			if err != nil || now.Sub(info.ModTime()) < staleAge {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if err := removeTree(p); err != nil {
				s.log.Warn("removing stale temp entry", "path", p, "err", err)
			} else {
				s.log.Info("removed stale temp entry", "path", p)
			}
		}
	}
	clean(s.tmpDir(), func(string) bool { return true })
	clean(s.layersTop(), func(n string) bool { return strings.HasPrefix(n, "tmp-") || strings.HasPrefix(n, "rm-") })
}

// refsVersion is the version of refs.json this code writes.
const refsVersion = 1

// refsFile is ROOT/refs.json. Its fields are the on-disk format: an
// upgrade must read what an earlier version wrote.
type refsFile struct {
	Version int                  `json:"version"`
	Refs    map[string]refRecord `json:"refs"`
}

// refRecord is one recorded reference.
type refRecord struct {
	// Digest is the manifest's (the platform's, under an index).
	Digest string `json:"digest"`
	// Index is the digest of the index Digest was picked from, if any.
	Index    string    `json:"index,omitempty"`
	Pulled   time.Time `json:"pulled"`
	LastUsed time.Time `json:"lastUsed,omitzero"`
}

func (s *Store) readRefs() (refsFile, error) {
	rf := refsFile{Version: refsVersion, Refs: map[string]refRecord{}}
	data, err := os.ReadFile(filepath.Join(s.root, "refs.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return rf, nil
	}
	if err != nil {
		return rf, fmt.Errorf("reading image references: %w", err)
	}
	if err := json.Unmarshal(data, &rf); err != nil {
		return rf, fmt.Errorf("reading %s: %w", filepath.Join(s.root, "refs.json"), err)
	}
	if rf.Version > refsVersion {
		return rf, fmt.Errorf("%s has version %d; this build reads up to %d", filepath.Join(s.root, "refs.json"), rf.Version, refsVersion)
	}
	if rf.Refs == nil {
		rf.Refs = map[string]refRecord{}
	}
	return rf, nil
}

// updateRefs applies fn to refs.json under refs.lock and writes the result
// back (temp file, fsync, rename, directory fsync). fn's error aborts the
// write and is returned.
func (s *Store) updateRefs(fn func(refs map[string]refRecord) error) error {
	l, err := s.refsLock()
	if err != nil {
		return err
	}
	defer l.unlock()
	rf, err := s.readRefs()
	if err != nil {
		return err
	}
	if err := fn(rf.Refs); err != nil {
		return err
	}
	rf.Version = refsVersion
	if err := atomicfile.WriteJSON(s.root, "refs.json", rf, 0o600, atomicfile.SyncDir); err != nil {
		return fmt.Errorf("writing image references: %w", err)
	}
	return nil
}

// Image is a stored image, all of it present.
type Image struct {
	// Ref is the normalized reference (imageref.Ref.String()).
	Ref string
	// Digest is the manifest digest, "sha256:…": of the platform
	// manifest, not of the index.
	Digest string
	// Config is the parsed config.
	Config v1.ConfigFile
	// ConfigJSON is the raw config blob.
	ConfigJSON []byte
	// Layers are the absolute paths of the unpacked layer directories,
	// lowest (base) first.
	Layers []string
	// Size is the bytes stored for it: manifest, config and compressed
	// layer blobs.
	Size int64
}

// Entry is one recorded reference, for `image ls`.
type Entry struct {
	Ref      string
	Digest   string
	Size     int64
	Created  time.Time // the config's created
	Pulled   time.Time
	LastUsed time.Time
}

// parseDigest checks "sha256:<64 hex>".
func parseDigest(d string) (v1.Hash, error) {
	h, err := v1.NewHash(d)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("digest %q: %w", d, err)
	}
	if h.Algorithm != "sha256" {
		return v1.Hash{}, fmt.Errorf("digest %q: only sha256 is supported", d)
	}
	if _, err := hex.DecodeString(h.Hex); err != nil || strings.ToLower(h.Hex) != h.Hex {
		return v1.Hash{}, fmt.Errorf("digest %q: not lowercase hex", d)
	}
	return h, nil
}

// readBlob reads a stored blob and checks it against its digest (done for
// manifests and configs: small).
func (s *Store) readBlob(h v1.Hash) ([]byte, error) {
	data, err := os.ReadFile(s.blobPath(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: blob %s is missing", ErrNotFound, h)
	}
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", h, err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != h.Hex {
		return nil, fmt.Errorf("stored blob %s: %w (corrupt store)", h, ErrDigestMismatch)
	}
	return data, nil
}

// stored is what the store holds for one manifest digest.
type stored struct {
	manifest   *v1.Manifest
	config     *v1.ConfigFile
	configJSON []byte
	size       int64
}

// loadManifest reads a stored manifest and its config.
func (s *Store) loadManifest(digest string) (*stored, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return nil, err
	}
	raw, err := s.readBlob(h)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing stored manifest %s: %w", h, err)
	}
	cfgJSON, err := s.readBlob(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgJSON))
	if err != nil {
		return nil, fmt.Errorf("parsing stored config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("stored image %s: %d layers but %d diff IDs", h, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	st := &stored{manifest: m, config: cfg, configJSON: cfgJSON, size: int64(len(raw)) + m.Config.Size}
	for _, l := range m.Layers {
		st.size += l.Size
	}
	return st, nil
}

// load builds the Image recorded as ref with the manifest digest.
func (s *Store) load(ref, digest string) (*Image, error) {
	st, err := s.loadManifest(digest)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	img := &Image{
		Ref:        ref,
		Digest:     digest,
		Config:     *st.config,
		ConfigJSON: st.configJSON,
		Size:       st.size,
	}
	for _, d := range st.config.RootFS.DiffIDs {
		p := s.layerPath(d)
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("image %s: %w: layer %s is not unpacked", ref, ErrNotFound, d)
		}
		img.Layers = append(img.Layers, p)
	}
	return img, nil
}

// Get returns a stored image by reference (tag or digest, normalized with
// imageref) without any network. It wraps ErrNotFound when the reference
// is not recorded or anything it needs is missing. A reference by digest
// also finds an image pulled by tag from the same repository.
func (s *Store) Get(ref string) (*Image, error) {
	r, err := imageref.Parse(ref)
	if err != nil {
		return nil, err
	}
	rf, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	norm := r.String()
	if _, rec, ok := resolve(rf.Refs, r); ok {
		return s.load(norm, rec.Digest)
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, norm)
}

// resolve finds the record for r: its normalized form, or for a reference
// by digest, a record of the same repository with that manifest digest.
func resolve(refs map[string]refRecord, r imageref.Ref) (string, refRecord, bool) {
	norm := r.String()
	if rec, ok := refs[norm]; ok {
		return norm, rec, true
	}
	if r.Digest != "" {
		for _, k := range sortedKeys(refs) {
			kr, err := imageref.Parse(k)
			if err == nil && kr.Name() == r.Name() && refs[k].Digest == r.Digest {
				return k, refs[k], true
			}
		}
	}
	return "", refRecord{}, false
}

// GetDigest returns a stored image by its manifest digest "sha256:…" (or
// the digest of the index it was picked from), under the first reference
// (sorted) that records it.
func (s *Store) GetDigest(digest string) (*Image, error) {
	if _, err := parseDigest(digest); err != nil {
		return nil, err
	}
	rf, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(rf.Refs) {
		if rec := rf.Refs[k]; rec.Digest == digest || rec.Index == digest {
			return s.load(k, rec.Digest)
		}
	}
	return nil, fmt.Errorf("%w: no reference records %s", ErrNotFound, digest)
}

func sortedKeys(m map[string]refRecord) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// List returns the recorded references, sorted by Ref. One whose manifest
// or config cannot be read is listed with a zero Size and Created.
func (s *Store) List() ([]Entry, error) {
	rf, err := s.readRefs()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, k := range sortedKeys(rf.Refs) {
		rec := rf.Refs[k]
		e := Entry{Ref: k, Digest: rec.Digest, Pulled: rec.Pulled, LastUsed: rec.LastUsed}
		if st, err := s.loadManifest(rec.Digest); err != nil {
			s.log.Warn("listing image", "ref", k, "err", err)
		} else {
			e.Size = st.size
			e.Created = st.config.Created.Time
		}
		out = append(out, e)
	}
	return out, nil
}

// Touch sets the reference's LastUsed to now. A reference by digest that
// Get finds through a tag's record touches that record.
func (s *Store) Touch(ref string) error {
	r, err := imageref.Parse(ref)
	if err != nil {
		return err
	}
	return s.updateRefs(func(refs map[string]refRecord) error {
		key, rec, ok := resolve(refs, r)
		if !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, r.String())
		}
		rec.LastUsed = time.Now().UTC()
		refs[key] = rec
		return nil
	})
}

// Remove forgets ref (wrapping ErrNotFound if it is not recorded), then
// deletes every blob and unpacked layer that no remaining reference needs
// and no manifest digest in keep needs (the images that containers run,
// which a moved tag may no longer record). The caller checks that no
// container uses the image. The deletion waits for running pulls (in any
// process) to end.
func (s *Store) Remove(ref string, keep ...string) error {
	_, err := s.remove(ref, keep, nil)
	return err
}

// remove is Remove that returns the bytes freed; when check is set, it is
// called with the record under refs.lock and its error leaves the
// reference recorded and is returned.
func (s *Store) remove(ref string, keep []string, check func(refRecord) error) (int64, error) {
	norm, err := imageref.Normalize(ref)
	if err != nil {
		return 0, err
	}
	err = s.updateRefs(func(refs map[string]refRecord) error {
		rec, ok := refs[norm]
		if !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, norm)
		}
		if check != nil {
			if err := check(rec); err != nil {
				return err
			}
		}
		delete(refs, norm)
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.log.Info("image reference removed", "ref", norm)
	freed, err := s.collect(keep)
	if err != nil {
		return freed, fmt.Errorf("removing the content of %s: %w", norm, err)
	}
	return freed, nil
}

// collect deletes the blobs and layers that neither a recorded reference
// nor a manifest digest in keep needs, under the exclusive gc.lock (a pull
// holds it shared while it runs), and returns the bytes freed (allocated
// blocks, as du counts them).
func (s *Store) collect(keep []string) (int64, error) {
	l, err := s.gcLockExclusive()
	if err != nil {
		return 0, err
	}
	defer l.unlock()
	rf, err := s.readRefs()
	if err != nil {
		return 0, err
	}
	blobs := map[string]bool{}
	layers := map[string]bool{}
	// A kept digest keeps what its manifest needs, whether a reference
	// records it or not: a container runs from it (a tag may have moved
	// on since it was created). One that is not a readable manifest keeps
	// its blob alone.
	for _, d := range keep {
		h, err := parseDigest(d)
		if err != nil {
			continue
		}
		st, err := s.loadManifest(d)
		if err != nil {
			if _, serr := os.Lstat(s.blobPath(h)); serr == nil {
				s.log.Debug("collecting: kept digest is not a whole image", "digest", d, "err", err)
				blobs[h.Hex] = true
			}
			continue
		}
		blobs[h.Hex] = true
		blobs[st.manifest.Config.Digest.Hex] = true
		for _, ld := range st.manifest.Layers {
			blobs[ld.Digest.Hex] = true
		}
		for _, dd := range st.config.RootFS.DiffIDs {
			layers[dd.Hex] = true
		}
	}
	for ref, rec := range rf.Refs {
		for _, d := range []string{rec.Digest, rec.Index} {
			if h, err := parseDigest(d); err == nil {
				blobs[h.Hex] = true
			}
		}
		st, err := s.loadManifest(rec.Digest)
		if errors.Is(err, ErrNotFound) {
			// Broken already (Get fails): keep what it has left, but
			// nothing needs keeping beyond what exists.
			s.log.Warn("collecting: image is incomplete", "ref", ref, "err", err)
			if h, perr := parseDigest(rec.Digest); perr == nil {
				if raw, rerr := os.ReadFile(s.blobPath(h)); rerr == nil {
					if m, merr := v1.ParseManifest(bytes.NewReader(raw)); merr == nil {
						blobs[m.Config.Digest.Hex] = true
						for _, ld := range m.Layers {
							blobs[ld.Digest.Hex] = true
						}
					}
				}
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reading what %s needs (nothing deleted): %w", ref, err)
		}
		blobs[st.manifest.Config.Digest.Hex] = true
		for _, ld := range st.manifest.Layers {
			blobs[ld.Digest.Hex] = true
		}
		for _, d := range st.config.RootFS.DiffIDs {
			layers[d.Hex] = true
		}
	}

	var errs []error
	var freed int64
	entries, err := os.ReadDir(s.blobDir())
	if err != nil {
		return 0, fmt.Errorf("listing blobs: %w", err)
	}
	for _, e := range entries {
		if blobs[e.Name()] || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(s.blobDir(), e.Name())
		size := allocated(p)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		freed += size
		s.log.Debug("blob removed", "digest", "sha256:"+e.Name(), "bytes", size)
	}
	entries, err = os.ReadDir(s.layerDir())
	if err != nil {
		return freed, errors.Join(append(errs, fmt.Errorf("listing layers: %w", err))...)
	}
	for _, e := range entries {
		if layers[e.Name()] {
			continue
		}
		size := treeAllocated(filepath.Join(s.layerDir(), e.Name()))
		if err := s.removeLayer(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		freed += size
		s.log.Debug("layer removed", "diffID", "sha256:"+e.Name(), "bytes", size)
	}
	if err := atomicfile.SyncDirectory(s.blobDir()); err != nil {
		errs = append(errs, err)
	}
	return freed, errors.Join(errs...)
}

// removeLayer renames layers/sha256/<hex> out of the way (so no reader
// sees half of it) and deletes it without following symlinks or crossing
// mounts.
func (s *Store) removeLayer(hexName string) error {
	src := filepath.Join(s.layerDir(), hexName)
	tmp, err := os.MkdirTemp(s.layersTop(), "rm-")
	if err != nil {
		return fmt.Errorf("removing layer %s: %w", hexName, err)
	}
	dst := filepath.Join(tmp, hexName)
	if err := os.Rename(src, dst); err != nil {
		os.Remove(tmp)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("removing layer %s: %w", hexName, err)
	}
	if err := removeTree(tmp); err != nil {
		return fmt.Errorf("removing layer sha256:%s: %w", hexName, err)
	}
	return nil
}
