//go:build !reconciled_lean

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/internal/daemon"
)

// `image prune` and `image df`, and the totals under `image ls`.

const imagePruneSynopsis = `image prune [--all] [--image-min-age DUR] [--image-root DIR] [--state DIR]
                  [--manifests DIR] [--insecure-manifests] [-o text|json]

Removes the images that no manifest in --manifests names (default: the directory
of the daemon with that state directory, else ` + daemon.DefaultManifests + `) and no
container of that daemon was created from (its records, running or not), with the
blobs and layers no image left needs. Without --all, an image used or pulled within
--image-min-age (default ` + "2m" + `, as the daemon's GC) is kept; with --all, every unused
image goes. It prints what it removed and the bytes freed.`

const imageDFSynopsis = `image df [--image-root DIR] [-o text|json]

The image store's size and its file system's use.`

// prunedImage is one image `image prune -o json` removed.
type prunedImage struct {
	Reference  string    `json:"reference"`
	Digest     string    `json:"digest"`
	LastUsed   time.Time `json:"lastUsed,omitzero"`
	FreedBytes int64     `json:"freedBytes"`
}

// pruneResult is `image prune -o json` (the contract).
type pruneResult struct {
	Removed     []prunedImage `json:"removed"`
	FreedBytes  int64         `json:"freedBytes"`
	UsedPercent float64       `json:"usedPercent"`
	AvailBytes  uint64        `json:"availBytes"`
}

func runImagePrune(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("image prune", imagePruneSynopsis, stderr)
	root := fs.String("image-root", image.DefaultRoot, "the image store")
	state := fs.String("state", daemon.DefaultState, "the daemon's state directory (its records tell which images containers run)")
	manifests := fs.String("manifests", daemon.DefaultManifests, "directory of manifests whose images are kept (default: the daemon's, from STATE/daemon.json)")
	insecure := fs.Bool("insecure-manifests", false, "do not refuse manifests that are writable by group or others or not owned by root")
	all := fs.Bool("all", false, "remove every unused image, however recently used or pulled")
	minAge := fs.Duration("image-min-age", image.DefaultGCMinAge, "without --all, keep images used or pulled more recently than this")
	output := fs.String("o", "text", "output format: text or json")
	if _, ok := parseArgs(fs, args, 0, 0); !ok {
		return 2
	}
	if *output != "text" && *output != "json" {
		fs.Usage()
		return 2
	}
	if *minAge < 0 {
		fmt.Fprintf(stderr, "reconciled image prune: --image-min-age %s: must not be negative\n", *minAge)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "reconciled image prune: %v (nothing removed)\n", err)
		return 1
	}
	if !flagSet(fs, "manifests") {
		if info, err := daemon.ReadInfo(*state); err == nil && info.Manifests != "" {
			*manifests = info.Manifests
		}
	}
	used, err := pruneInUse(*state, *manifests, *insecure)
	if err != nil {
		return fail(err)
	}
	store, err := image.Open(image.Options{Root: *root})
	if err != nil {
		return fail(err)
	}
	age := *minAge
	if *all {
		age = 0
	}
	res, err := store.Prune(ctx, used, age, time.Now())
	out := pruneResult{Removed: []prunedImage{}, FreedBytes: res.Freed, UsedPercent: res.After.UsedPercent(), AvailBytes: res.After.Avail}
	for _, r := range res.Removed {
		out.Removed = append(out.Removed, prunedImage{Reference: r.Ref, Digest: r.Digest, LastUsed: r.LastUsed, FreedBytes: r.Freed})
	}
	if *output == "json" {
		if rc := printJSON(stdout, stderr, out); rc != 0 {
			return rc
		}
	} else {
		for _, r := range out.Removed {
			fmt.Fprintf(stdout, "removed %s (%s, %s freed)\n", r.Reference, shortDigest(r.Digest), humanBytes(r.FreedBytes))
		}
		if len(out.Removed) == 0 {
			fmt.Fprintln(stdout, "no unused image to remove")
		}
		fmt.Fprintf(stdout, "freed %s; filesystem %.0f %% used (%s free)\n", humanBytes(out.FreedBytes), out.UsedPercent, humanBytes(int64(out.AvailBytes)))
	}
	if err != nil {
		fmt.Fprintf(stderr, "reconciled image prune: %v\n", err)
		return 1
	}
	return 0
}

// pruneInUse is what a prune keeps: the images the manifests name (an
// invalid file's last good definitions included, read from the records
// as the daemon does) and those the records say containers were created
// from. A record or a manifest directory that cannot be read fails it:
// an image is not removed on a guess.
func pruneInUse(state, manifests string, insecure bool) (image.InUse, error) {
	layout := daemon.Layout(state)
	records, err := actual.OpenStore(layout.Runtime(), layout.Records(), actual.StoreOptions{})
	if err != nil {
		return image.InUse{}, fmt.Errorf("unable to tell which images the containers use: %w", err)
	}
	want, _, err := desired.NewLoader(manifests, desired.Options{InsecureManifests: insecure}, daemon.Seed(records.Records())).Load()
	if err != nil {
		if errors.Is(err, desired.ErrNotExist) {
			return image.InUse{}, fmt.Errorf("%w (give the daemon's directory with --manifests)", err)
		}
		return image.InUse{}, err
	}
	return daemon.ImagesInUse(want, records.Records()), nil
}

// flagSet says whether the flag name was given.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// storeTotals is `image df -o json` (the contract).
type storeTotals struct {
	Path        string  `json:"path"`
	Images      int     `json:"images"`
	StoreBytes  int64   `json:"storeBytes"`
	TotalBytes  uint64  `json:"totalBytes"`
	AvailBytes  uint64  `json:"availBytes"`
	UsedPercent float64 `json:"usedPercent"`
}

func totalsOf(store *image.Store) (storeTotals, error) {
	size, err := store.Size()
	if err != nil {
		return storeTotals{}, err
	}
	u, err := store.Usage()
	if err != nil {
		return storeTotals{}, err
	}
	refs, err := store.Digests()
	if err != nil {
		return storeTotals{}, err
	}
	return storeTotals{Path: store.Root(), Images: len(refs), StoreBytes: size, TotalBytes: u.Total, AvailBytes: u.Avail, UsedPercent: u.UsedPercent()}, nil
}

// footer is the line under `image ls`: "store 123.4 MB; filesystem 62 %
// used (12.3 GB free)".
func (t storeTotals) footer() string {
	return fmt.Sprintf("store %s; filesystem %.0f %% used (%s free)", humanBytes(t.StoreBytes), t.UsedPercent, humanBytes(int64(t.AvailBytes)))
}

func runImageDF(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("image df", imageDFSynopsis, stderr)
	root := fs.String("image-root", image.DefaultRoot, "the image store")
	output := fs.String("o", "text", "output format: text or json")
	if _, ok := parseArgs(fs, args, 0, 0); !ok {
		return 2
	}
	if *output != "text" && *output != "json" {
		fs.Usage()
		return 2
	}
	store, err := image.Open(image.Options{Root: *root})
	if err != nil {
		fmt.Fprintf(stderr, "reconciled image df: %v\n", err)
		return 1
	}
	t, err := totalsOf(store)
	if err != nil {
		fmt.Fprintf(stderr, "reconciled image df: %v\n", err)
		return 1
	}
	if *output == "json" {
		return printJSON(stdout, stderr, t)
	}
	fmt.Fprintf(stdout, "%s: %d images; %s\n", t.Path, t.Images, t.footer())
	return 0
}

// humanBytes is a size in decimal units: 512 B, 12.3 kB, 123.4 MB, 1.2 GB.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %cB", f, "kMGTP"[i])
}
