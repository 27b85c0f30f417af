package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/image/layer"
	"reconciled.dev/reconciled/image/users"
)

// imageStore is what the resolver needs of the image store
// (*image.Store).
type imageStore interface {
	Pull(ctx context.Context, ref string, progress func(image.Progress)) (*image.Image, error)
	Get(ref string) (*image.Image, error)
	GetDigest(digest string) (*image.Image, error)
	Touch(ref string) error
	// RefsPath is the file every change of a reference rewrites (by
	// rename): while it stays the same, so do the answers of Get and
	// GetDigest ("" when unknown: nothing is cached).
	RefsPath() string
}

// Pull retries: 1 s doubling to 5 min with jitter, as crash-loop backoff.
const (
	pullRetryMin = time.Second
	pullRetryMax = 5 * time.Minute
	// progressEvery spaces the status updates of a running pull.
	progressEvery = time.Second
)

// imageResolver is the loop's reconciler.Images: it completes the
// definitions of containers that run an image from the store, and pulls
// in the background what is missing, one pull per reference however many
// containers wait for it. It decides nothing about the containers
// themselves: an unresolved definition goes to the planner, which keeps
// what runs.
type imageResolver struct {
	store  imageStore
	layout Layout
	log    *slog.Logger
	// ctx bounds the pulls (the daemon's life); notify asks the loop to
	// look at a container again.
	ctx    context.Context
	notify func(name string)
	now    func() time.Time
	// dry resolves from the store alone and starts no pull (plan).
	dry bool
	// importDir is the daemon's import directory ("" for none), which
	// the message of a missing image with imagePullPolicy Never names.
	importDir string

	mu    sync.Mutex
	pulls map[string]*pull // by normalized reference
	// pulledFor records, for a container with imagePullPolicy Always,
	// which of its runs (runToken) the last pull was made for: a pull
	// is made before each create, not before each plan.
	pulledFor map[string]string
	users     map[userKey]userResult // the image's User, resolved

	// The store's answers and the definitions completed from them, kept
	// while refs.json is the same file (a pull, import, removal or use
	// replaces it): the loop resolves a container at every plan, and a
	// store lookup reads three files.
	cacheStamp unix.Stat_t
	byRef      map[string]*image.Image
	byDigest   map[string]*image.Image
	resolved   map[resolvedKey]*desired.Container
}

// resolvedKey is a wanted definition (immutable once in a desired set)
// completed from one image.
type resolvedKey struct {
	want   *desired.Container
	digest string
}

// maxCached bounds each cache; past it the cache starts over.
const maxCached = 4096

// pull is one reference's pull, running or failed.
type pull struct {
	ref     string
	waiters map[string]string // container name → runToken it waits with
	running bool
	done    int64
	total   int64
	// err, failures and next describe the last failure: no new pull
	// starts before next.
	err      error
	failures int
	next     time.Time
}

type userKey struct{ digest, user string }

type userResult struct {
	u   users.User
	err error
}

// newImageResolver returns the resolver that pulls into store; importDir
// ("" for none) is named in the messages of images that may not be
// pulled; notify asks the loop to look at a container again.
func newImageResolver(ctx context.Context, store imageStore, layout Layout, importDir string, log *slog.Logger, notify func(string)) *imageResolver {
	return &imageResolver{store: store, layout: layout, importDir: importDir, log: log, ctx: ctx, notify: notify, now: time.Now,
		pulls: map[string]*pull{}, pulledFor: map[string]string{}, users: map[userKey]userResult{}}
}

// fresh drops the caches when refs.json is not the file they were filled
// from; it reports whether anything may be cached.
func (r *imageResolver) freshLocked() bool {
	path := r.store.RefsPath()
	if path == "" {
		return false
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		st = unix.Stat_t{}
	}
	c := &r.cacheStamp
	if st.Dev != c.Dev || st.Ino != c.Ino || st.Size != c.Size || st.Mtim != c.Mtim || st.Ctim != c.Ctim ||
		r.byRef == nil || len(r.byRef)+len(r.byDigest)+len(r.resolved) > 3*maxCached {
		r.cacheStamp = st
		r.byRef, r.byDigest = map[string]*image.Image{}, map[string]*image.Image{}
		r.resolved = map[resolvedKey]*desired.Container{}
	}
	return true
}

// get is store.Get through the cache.
func (r *imageResolver) get(ref string) (*image.Image, error) {
	return r.cached(&r.byRef, ref, r.store.Get)
}

// getDigest is store.GetDigest through the cache.
func (r *imageResolver) getDigest(digest string) (*image.Image, error) {
	return r.cached(&r.byDigest, digest, r.store.GetDigest)
}

// cached is load(key) through the cache *m (r.byRef or r.byDigest, which
// freshLocked may replace): what it loads is kept only while the cache is
// fresh.
func (r *imageResolver) cached(m *map[string]*image.Image, key string, load func(string) (*image.Image, error)) (*image.Image, error) {
	r.mu.Lock()
	ok := r.freshLocked()
	img := (*m)[key]
	r.mu.Unlock()
	if img != nil {
		return img, nil
	}
	img, err := load(key)
	if err == nil && ok {
		r.mu.Lock()
		(*m)[key] = img
		r.mu.Unlock()
	}
	return img, err
}

// runToken names one run of a container: a pull for an Always container
// is made once per create, that is once per token.
func runToken(have *actual.Container) string {
	if have == nil || have.Live() {
		return ""
	}
	return fmt.Sprintf("%d/%d", have.Created.UnixNano(), have.Pid)
}

// Resolve implements reconciler.Images.
func (r *imageResolver) Resolve(ctx context.Context, want *desired.Container, have *actual.Container) *desired.Container {
	// A container keeps the digest it was created from (a tag is
	// resolved once, at create), unless Always asks for a fresh look.
	if have != nil && have.Applied != nil && have.Applied.Image == want.Image && have.Applied.ImageDigest != "" &&
		want.PullPolicy != desired.PullAlways {
		if img, err := r.getDigest(have.Applied.ImageDigest); err == nil {
			return r.complete(want, img)
		}
	}
	switch want.PullPolicy {
	case desired.PullNever:
		img, err := r.get(want.Image)
		if err != nil {
			how := "pull it with: reconciled image pull " + want.Image
			if r.importDir != "" {
				how += ", or drop an archive of it (oci-archive or docker-archive) into the import directory " + r.importDir
			}
			return unresolved(want, true, fmt.Sprintf("image %s is not in the store and imagePullPolicy is Never (%s): %v",
				want.Image, how, err))
		}
		return r.complete(want, img)
	case desired.PullAlways:
		if have != nil && have.Live() {
			// Its create consumed the pull made for it; the next
			// create (a restart, or a new container of that name)
			// pulls again.
			r.mu.Lock()
			delete(r.pulledFor, want.Name)
			r.mu.Unlock()
		} else {
			token := runToken(have)
			r.mu.Lock()
			fresh := r.pulledFor[want.Name] == token && r.pulls[want.Image] == nil
			if have == nil && fresh {
				_, fresh = r.pulledFor[want.Name]
			}
			r.mu.Unlock()
			if !fresh {
				return r.startPull(want, token)
			}
		}
	}
	img, err := r.get(want.Image)
	if err != nil {
		if !errors.Is(err, image.ErrNotFound) {
			r.log.Warn("unable to read the image store", "image", want.Image, "err", err)
		}
		return r.startPull(want, runToken(have))
	}
	return r.complete(want, img)
}

// complete resolves want from img, or says why it cannot be.
func (r *imageResolver) complete(want *desired.Container, img *image.Image) *desired.Container {
	key := resolvedKey{want, img.Digest}
	r.mu.Lock()
	c := r.resolved[key]
	r.mu.Unlock()
	if c != nil {
		return c
	}
	c = r.completeUncached(want, img)
	if !c.Unresolved() {
		r.mu.Lock()
		if r.resolved != nil {
			r.resolved[key] = c
		}
		r.mu.Unlock()
	}
	return c
}

func (r *imageResolver) completeUncached(want *desired.Container, img *image.Image) *desired.Container {
	cfg := img.Config.Config
	info := desired.ImageInfo{
		Digest:     img.Digest,
		RootPath:   r.layout.Rootfs(want.Name),
		Entrypoint: cfg.Entrypoint,
		Cmd:        cfg.Cmd,
		Env:        cfg.Env,
		WorkingDir: cfg.WorkingDir,
		StopSignal: cfg.StopSignal,
	}
	if hc := cfg.Healthcheck; hc != nil {
		info.Healthcheck = &desired.ImageHealthcheck{Test: hc.Test, Interval: hc.Interval, Timeout: hc.Timeout, StartPeriod: hc.StartPeriod, Retries: hc.Retries}
	}
	if want.Manifest != nil && want.Manifest.Spec.UserFromImage && cfg.User != "" {
		u, err := r.lookupUser(img, cfg.User)
		if err != nil {
			return unresolved(want, true, fmt.Sprintf("image %s: User %q: %v", want.Image, cfg.User, err))
		}
		info.HasUser, info.UID, info.GID, info.AdditionalGids = true, u.UID, u.GID, u.Groups
	}
	c, err := want.WithImage(info)
	if err != nil {
		return unresolved(want, true, err.Error())
	}
	if c.ImageHealthNote != "" && want.HealthOf() == nil && want.Manifest != nil && !want.Manifest.Spec.HealthNone {
		r.log.Warn("the image's health check is not used", "container", want.Name, "image", want.Image, "why", c.ImageHealthNote)
	}
	return c
}

func (r *imageResolver) lookupUser(img *image.Image, spec string) (users.User, error) {
	k := userKey{img.Digest, spec}
	r.mu.Lock()
	res, ok := r.users[k]
	r.mu.Unlock()
	if !ok {
		res.u, res.err = users.Lookup(img.Layers, spec)
		r.mu.Lock()
		r.users[k] = res
		r.mu.Unlock()
	}
	return res.u, res.err
}

func unresolved(want *desired.Container, failed bool, why string) *desired.Container {
	c := *want
	c.ImageDigest, c.ImageWait, c.ImageFailed = "", why, failed
	return &c
}

// startPull makes sure a pull of want's image runs (or waits out its
// backoff) with want's container among its waiters, and says so.
func (r *imageResolver) startPull(want *desired.Container, token string) *desired.Container {
	if r.dry {
		return unresolved(want, false, "would pull "+want.Image)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pulls[want.Image]
	if p == nil {
		p = &pull{ref: want.Image, waiters: map[string]string{}}
		r.pulls[want.Image] = p
	}
	p.waiters[want.Name] = token
	now := r.now()
	switch {
	case p.running:
		return unresolved(want, false, "pulling "+want.Image+progressWords(p.done, p.total))
	case p.err != nil && now.Before(p.next):
		return unresolved(want, true, fmt.Sprintf("failed to pull %s: %v; next try in %s",
			want.Image, p.err, roundSeconds(p.next.Sub(now))))
	}
	p.running, p.done, p.total = true, 0, 0
	go r.run(p)
	return unresolved(want, false, "pulling "+want.Image)
}

// run pulls p.ref and tells its waiters when it ends.
func (r *imageResolver) run(p *pull) {
	log := r.log.With("image", p.ref)
	log.Info("pulling image")
	start := r.now()
	var last time.Time
	img, err := r.store.Pull(r.ctx, p.ref, func(pr image.Progress) {
		r.mu.Lock()
		p.done, p.total = pr.Done, pr.Total
		waiters := waiterNames(p)
		r.mu.Unlock()
		if now := r.now(); now.Sub(last) >= progressEvery {
			last = now
			for _, n := range waiters {
				r.notify(n)
			}
		}
	})
	r.mu.Lock()
	p.running = false
	waiters := waiterNames(p)
	if err == nil {
		for n, token := range p.waiters {
			r.pulledFor[n] = token
		}
		delete(r.pulls, p.ref)
	} else {
		p.err, p.failures = err, p.failures+1
		delay := min(pullRetryMin<<min(p.failures-1, 20), pullRetryMax)
		delay += time.Duration(rand.Int64N(int64(delay)/5 + 1)) // jitter against thundering herds
		p.next = r.now().Add(delay)
		// Waiters are asked to look again when the backoff ends; those
		// still wanting the image start the next try.
		time.AfterFunc(delay, func() {
			r.mu.Lock()
			names := waiterNames(p)
			r.mu.Unlock()
			for _, n := range names {
				r.notify(n)
			}
		})
	}
	r.mu.Unlock()
	if err != nil {
		if r.ctx.Err() == nil {
			log.Error("image pull failed", "err", err, "failures", p.failures)
		}
	} else {
		log.Info("image pulled", "digest", img.Digest, "bytes", img.Size, "took", r.now().Sub(start).Round(time.Millisecond))
	}
	for _, n := range waiters {
		r.notify(n)
	}
}

// Forget drops container name's interest in any pull (its manifest is
// gone).
func (r *imageResolver) Forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pulledFor, name)
	for ref, p := range r.pulls {
		delete(p.waiters, name)
		if len(p.waiters) == 0 && !p.running {
			delete(r.pulls, ref)
		}
	}
}

func waiterNames(p *pull) []string {
	out := make([]string, 0, len(p.waiters))
	for n := range p.waiters {
		out = append(out, n)
	}
	return out
}

// progressWords is ": 1.2 of 4.0 MB", or "" before the sizes are known.
func progressWords(done, total int64) string {
	if total <= 0 {
		return ""
	}
	return fmt.Sprintf(": %.1f of %.1f MB", float64(done)/1e6, float64(total)/1e6)
}

func roundSeconds(d time.Duration) time.Duration {
	r := d.Truncate(time.Second)
	if r < d || r == 0 {
		r += time.Second
	}
	return r
}

// shareRootfsDir makes dir (STATE/rootfs) a shared mount of its own peer
// group, once: the executor's spare inits clone their mount namespace
// ahead of time, and an image container's root filesystem, mounted under
// dir later, must propagate into them (they make their "/" rslave before
// they use it). Its own peer group keeps the mounts out of every other
// namespace of the host.
func shareRootfsDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("unable to create %s: %w", dir, err)
	}
	mounted, err := layer.Mounted(dir)
	if err != nil {
		return err
	}
	if !mounted {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("unable to bind %s onto itself: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("unable to make %s private: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("unable to make %s shared: %w", dir, err)
	}
	return nil
}

// ResolveOffline resolves the containers of want that run an image from
// the store at imageRoot alone, as the daemon with state directory state
// would before planning, without pulling: a missing image says "would
// pull REF" (for `reconciled plan`).
func ResolveOffline(ctx context.Context, imageRoot, state string, want desired.Set, have actual.Set) (desired.Set, error) {
	var r *imageResolver
	out := want
	out.Containers = make(map[string]*desired.Container, len(want.Containers))
	for n, c := range want.Containers {
		out.Containers[n] = c
		if c == nil || c.Image == "" {
			continue
		}
		if r == nil {
			store, err := image.Open(image.Options{Root: imageRoot})
			if err != nil {
				return want, err
			}
			r = newImageResolver(ctx, store, Layout(state), "", slog.New(slog.DiscardHandler), func(string) {})
			r.dry = true
		}
		out.Containers[n] = r.Resolve(ctx, c, have[n])
	}
	return out, nil
}

// ImageUsers returns, for every image digest, the containers of the
// daemon with state directory state whose record says they run it (sorted
// names), for `image ls` and `image rm`, with or without a running
// daemon. A missing state directory has none.
func ImageUsers(state string) (map[string][]string, error) {
	dir := Layout(state).Records()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("unable to read the container records: %w", err)
	}
	out := map[string][]string{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		r, err := actual.DecodeRecord(data)
		if err != nil || r.Applied == nil || r.Applied.ImageDigest == "" {
			continue
		}
		out[r.Applied.ImageDigest] = append(out[r.Applied.ImageDigest], name)
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out, nil
}

// watchRefs calls changed whenever a reference in the store at refsPath
// comes to name another digest, or appears or goes (a `reconciled image
// pull` of a moved tag, by any process): containers with imagePullPolicy
// Always then follow it. Uses (last-used times) change nothing. It
// returns when ctx ends; a watch that cannot be set up is logged, and the
// periodic full pass still catches such changes.
func watchRefs(ctx context.Context, digests func() (map[string]string, error), refsPath string, log *slog.Logger, changed func()) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("unable to watch the image references; moved tags are seen at the next full pass", "err", err)
		return
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(refsPath)); err != nil {
		log.Warn("unable to watch the image references; moved tags are seen at the next full pass", "err", err)
		return
	}
	last, _ := digests()
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Name == refsPath && settle == nil {
				settle = time.After(50 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			log.Warn("image reference watch", "err", err)
		case <-settle:
			settle = nil
			now, err := digests()
			if err != nil {
				log.Warn("unable to read the image references", "err", err)
				continue
			}
			if !maps.Equal(now, last) {
				last = now
				changed()
			}
		}
	}
}
