package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/reconciler"
)

// DefaultImageGCEvery is how often the daemon looks at the image store's
// file system (besides after each change of its references: a pull).
const DefaultImageGCEvery = 30 * time.Second

// notLoadedRetry is how soon a GC that found the manifests not read yet
// looks again.
const notLoadedRetry = time.Second

// ImageDisk is the image store's file system as the daemon's image GC
// last saw it (the status report's imageDisk).
type ImageDisk struct {
	Path        string  `json:"path"`
	UsedPercent float64 `json:"usedPercent"`
	// HighPercent and LowPercent are the GC's marks (--image-gc-high,
	// --image-gc-low).
	HighPercent float64 `json:"highPercent"`
	LowPercent  float64 `json:"lowPercent"`
	TotalBytes  uint64  `json:"totalBytes"`
	// AvailBytes is what is free for unprivileged use, as df shows it.
	AvailBytes uint64 `json:"availBytes"`
	// Pressure: above the high-water mark after the GC did what it could
	// (every image left is in use or younger than --image-min-age).
	Pressure bool      `json:"pressure"`
	Checked  time.Time `json:"checked"`
}

// PressureLine is the status text's line for a host under disk pressure:
// "disk pressure: /var/lib/reconciled/images 91 % used (high-water mark
// 85 %)".
func (d *ImageDisk) PressureLine() string {
	return fmt.Sprintf("disk pressure: %s %.0f %% used (high-water mark %g %%)", d.Path, d.UsedPercent, d.HighPercent)
}

// gcStore is what the image GC needs of the store (*image.Store).
type gcStore interface {
	GC(ctx context.Context, p image.GCPolicy, inUse func() (image.InUse, error), now time.Time) (image.GCResult, error)
	Usage() (image.Usage, error)
}

// imageGC removes images no container needs when the image store's file
// system passes the high-water mark, least recently used first, down to
// the low-water mark (image.Store.GC). It runs in a goroutine of its own:
// at start, every period and when kicked (after a pull), one pass at a
// time. What is in use is the daemon's fact, asked of inUse before each
// removal; until it can tell (manifests not read yet), nothing is removed.
type imageGC struct {
	store  gcStore
	policy image.GCPolicy
	every  time.Duration
	inUse  func() (image.InUse, error)
	log    *slog.Logger
	now    func() time.Time
	kick   chan struct{}

	mu   sync.Mutex
	disk *ImageDisk
}

func newImageGC(store gcStore, policy image.GCPolicy, every time.Duration, inUse func() (image.InUse, error), log *slog.Logger) *imageGC {
	if every <= 0 {
		every = DefaultImageGCEvery
	}
	return &imageGC{store: store, policy: policy, every: every, inUse: inUse, log: log, now: time.Now, kick: make(chan struct{}, 1)}
}

// Kick asks for a check soon (a pull just stored something).
func (g *imageGC) Kick() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// Disk returns what the last check saw (nil before the first).
func (g *imageGC) Disk() *ImageDisk {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.disk == nil {
		return nil
	}
	d := *g.disk
	return &d
}

// Run checks until ctx ends.
func (g *imageGC) Run(ctx context.Context) {
	t := time.NewTicker(g.every)
	defer t.Stop()
	for {
		g.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-g.kick:
		}
	}
}

// check runs one GC pass and records what the file system looks like
// after it. Pressure is logged when it starts and when it ends.
func (g *imageGC) check(ctx context.Context) {
	res, err := g.store.GC(ctx, g.policy, g.inUse, g.now())
	switch {
	case errors.Is(err, errNotLoaded):
		// The daemon is starting: look again in a moment.
		g.log.Debug("image garbage collection waits for the manifests")
		time.AfterFunc(notLoadedRetry, g.Kick)
	case err != nil && ctx.Err() == nil:
		g.log.Error("image garbage collection failed", "err", err)
	}
	after := res.After
	if after.Total == 0 {
		// The pass failed before reading the usage.
		u, uerr := g.store.Usage()
		if uerr != nil {
			if err == nil {
				g.log.Error("unable to read the image store's usage", "err", uerr)
			}
			return
		}
		after = u
	}
	if len(res.Removed) > 0 {
		g.log.Info("image garbage collection done", "removed", len(res.Removed), "freedBytes", res.Freed,
			"usedPercent", fmt.Sprintf("%.1f", after.UsedPercent()), "low", g.policy.LowPercent)
	}
	d := &ImageDisk{Path: after.Path, UsedPercent: after.UsedPercent(), HighPercent: g.policy.HighPercent,
		LowPercent: g.policy.LowPercent, TotalBytes: after.Total, AvailBytes: after.Avail,
		Pressure: after.UsedPercent() > g.policy.HighPercent, Checked: g.now().UTC()}
	g.mu.Lock()
	was := g.disk != nil && g.disk.Pressure
	g.disk = d
	g.mu.Unlock()
	switch {
	case d.Pressure && !was:
		g.log.Warn("disk pressure: the image store's file system stays above its high-water mark; every image left is in use or too young to remove",
			"path", d.Path, "usedPercent", fmt.Sprintf("%.1f", d.UsedPercent), "high", d.HighPercent, "availBytes", d.AvailBytes)
	case !d.Pressure && was:
		g.log.Info("disk pressure over", "path", d.Path, "usedPercent", fmt.Sprintf("%.1f", d.UsedPercent))
	}
}

// errNotLoaded: the manifests have not been read yet, so nothing tells
// which images they need.
var errNotLoaded = errors.New("the manifests have not been read yet")

// imagesInUse is what the daemon's image GC keeps: every image the
// desired set names (the last good definitions of invalid files
// included: the set keeps them), every digest the loop resolved for a
// container, and every image a container's record says it was created
// from (running or not). want is nil until the manifests are read.
func imagesInUse(want *desired.Set, statuses []reconciler.Status, records map[string]actual.Record) (image.InUse, error) {
	if want == nil {
		return image.InUse{}, errNotLoaded
	}
	var u image.InUse
	add := func(c *desired.Container) {
		if c == nil {
			return
		}
		if c.Image != "" {
			u.Refs = append(u.Refs, c.Image)
		}
		if c.ImageDigest != "" {
			u.Digests = append(u.Digests, c.ImageDigest)
		}
	}
	for _, c := range want.Containers {
		add(c)
	}
	for _, st := range statuses {
		add(st.Desired)
		if st.Actual != nil {
			add(st.Actual.Applied)
		}
	}
	for _, r := range records {
		add(r.Applied)
	}
	return u, nil
}

// ImagesInUse is what `reconciled image prune` keeps, as the daemon's GC
// would: the images want names and those the records say containers were
// created from.
func ImagesInUse(want desired.Set, records map[string]actual.Record) image.InUse {
	u, _ := imagesInUse(&want, nil, records)
	return u
}

// desiredSet is the last desired set the publisher was given (nil until
// the manifests are read).
func (p *publisher) desiredSet() *desired.Set {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.want
}
