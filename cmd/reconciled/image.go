//go:build !reconciled_lean

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/internal/daemon"
	"reconciled.dev/reconciled/internal/imageref"
)

func init() {
	register(&command{
		name:    "image",
		summary: "pull, list, inspect and remove images in the image store",
		run:     runImage,
	})
}

const imageSynopsis = `image pull|import|export|ls|inspect|rm|prune|df [FLAGS] [REF|FILE|DIR]

  image pull [--image-root DIR] [--insecure-registry HOST]... [--registry-config FILE]
             [--pull-concurrency N] [--pull-rate BYTES/s] REF
                                             (an interrupted pull resumes where it stopped)
  image import [--image-root DIR] [--name REF] [-o text|json] FILE|DIR
                                             (an OCI layout directory, an oci-archive or a
                                             docker-archive, gzip or zstd or not; no network)
  image ls [--image-root DIR] [--state DIR] [-o text|json]
  image inspect [--image-root DIR] REF       (the image's config, as JSON)
  image export [--image-root DIR] [-o text|json] REF FILE
                                             (an oci-archive of the stored image, digests unchanged,
                                             for 'image import' or a daemon's --image-import-dir
                                             on another host; written as FILE.tmp, then renamed)
  image rm [--image-root DIR] [--state DIR] REF
  image prune [--all] [--image-min-age DUR] [--image-root DIR] [--state DIR] [--manifests DIR] [-o text|json]
                                             (removes the images no manifest names and no container
                                             runs; without --all, only those unused for --image-min-age)
  image df [--image-root DIR] [-o text|json] (the store's size and its file system's use; 'image ls'
                                             shows them under its table in text only: its -o json
                                             stays a list of images)

They work with or without a running daemon, on the same store ('reconciled run
--image-root', default ` + image.DefaultRoot + `). A pulled tag that now names another
digest recreates the containers that run it with imagePullPolicy: Always.`

func runImage(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stderr, "usage: reconciled %s\n", imageSynopsis)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub, args := args[0], args[1:]
	switch sub { // flags of their own: image_gc.go
	case "prune":
		return runImagePrune(ctx, args, stdout, stderr)
	case "df":
		return runImageDF(args, stdout, stderr)
	}
	fs := newFlagSet("image "+sub, imageSynopsis, stderr)
	root := fs.String("image-root", image.DefaultRoot, "the image store")
	state := fs.String("state", daemon.DefaultState, "the daemon's state directory (to tell which containers use an image)")
	output := fs.String("o", "text", "output format: text or json")
	insecure := &listFlag{}
	fs.Var(insecure, "insecure-registry", "HOST or HOST:PORT reachable over plain HTTP (localhost and 127.0.0.1 always are); repeatable")
	regConfig := fs.String("registry-config", image.DefaultRegistryConfig, "docker config.json with registry credentials")
	name := fs.String("name", "", "import: the reference to store the image as; a repository alone keeps the tags the source gives (default: the source's names)")
	pullConcurrency := fs.Int("pull-concurrency", image.DefaultPullConcurrency, "pull: "+pullConcurrencyUsage)
	var pullRate int64
	fs.Var(rateFlag{&pullRate}, "pull-rate", "pull: "+pullRateUsage)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if *pullConcurrency < 1 {
		fmt.Fprintf(stderr, "reconciled image %s: --pull-concurrency %d: must be at least 1\n", sub, *pullConcurrency)
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "reconciled image %s: -o %q: use text or json\n", sub, *output)
		return 2
	}
	want := 1
	switch sub {
	case "ls":
		want = 0
	case "export":
		want = 2
	}
	if len(pos) != want {
		fmt.Fprintf(stderr, "reconciled image %s: expected %d argument(s), got %d\n", sub, want, len(pos))
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "reconciled image %s: %v\n", sub, err)
		return 1
	}
	if *name != "" && sub != "import" {
		fmt.Fprintf(stderr, "reconciled image %s: --name is for import only\n", sub)
		return 2
	}
	switch sub {
	case "ls":
	case "import":
		if *name != "" {
			if _, err := imageref.Parse(*name); err != nil {
				return fail(fmt.Errorf("--name: %w", err))
			}
		}
	default:
		if _, err := imageref.Parse(pos[0]); err != nil {
			return fail(err)
		}
	}
	store, err := image.Open(image.Options{Root: *root, Insecure: *insecure, RegistryConfig: *regConfig,
		PullConcurrency: *pullConcurrency, PullRate: pullRate})
	if err != nil {
		return fail(err)
	}
	switch sub {
	case "pull":
		return imagePull(ctx, store, pos[0], *output, stdout, stderr, fail)
	case "import":
		return imageImport(ctx, store, pos[0], *name, *output, stdout, stderr, fail)
	case "ls":
		return imageList(store, *state, *output, stdout, stderr, fail)
	case "export":
		return imageExport(ctx, store, pos[0], pos[1], *output, stdout, stderr, fail)
	case "inspect":
		img, err := store.Get(pos[0])
		if err != nil {
			return fail(err)
		}
		return printJSON(stdout, stderr, inspectOf(img))
	case "rm":
		norm, _ := imageref.Normalize(pos[0])
		img, err := store.Get(norm)
		if err != nil && !errors.Is(err, image.ErrNotFound) {
			return fail(err)
		}
		users, err := daemon.ImageUsers(*state)
		if err != nil {
			return fail(err)
		}
		if img != nil {
			if names := users[img.Digest]; len(names) > 0 {
				return fail(fmt.Errorf("%s is in use by %s (remove or change their manifests first)", norm, strings.Join(names, ", ")))
			}
		}
		// What containers run stays whole, recorded or not (a tag that
		// moved on since they were created).
		var running []string
		for d := range users {
			running = append(running, d)
		}
		if err := store.Remove(norm, running...); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "removed %s\n", norm)
		return 0
	}
	fmt.Fprintf(stderr, "reconciled image: unknown subcommand %q (use pull, import, export, ls, inspect, rm, prune or df)\n", sub)
	return 2
}

func imagePull(ctx context.Context, store *image.Store, ref, output string, stdout, stderr io.Writer, fail func(error) int) int {
	var last time.Time
	start := time.Now()
	img, err := store.Pull(ctx, ref, func(p image.Progress) {
		if now := time.Now(); now.Sub(last) >= time.Second && output == "text" {
			last = now
			fmt.Fprintf(stderr, "pulling %s: %.1f of %.1f MB\n", ref, float64(p.Done)/1e6, float64(p.Total)/1e6)
		}
	})
	if err != nil {
		return fail(err)
	}
	if output == "json" {
		return printJSON(stdout, stderr, map[string]any{"reference": img.Ref, "digest": img.Digest, "size": img.Size})
	}
	fmt.Fprintf(stdout, "%s@%s (%.1f MB in %s)\n", img.Ref, img.Digest, float64(img.Size)/1e6, time.Since(start).Round(time.Millisecond))
	return 0
}

// importedImage is one image `image import -o json` stored (the -o json
// contract: a list of these).
type importedImage struct {
	Reference string `json:"reference"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

func imageImport(ctx context.Context, store *image.Store, src, name, output string, stdout, stderr io.Writer, fail func(error) int) int {
	imgs, err := store.Import(ctx, src, name)
	if err != nil {
		return fail(err)
	}
	if output == "json" {
		out := make([]importedImage, 0, len(imgs))
		for _, img := range imgs {
			out = append(out, importedImage{Reference: img.Ref, Digest: img.Digest, Size: img.Size})
		}
		return printJSON(stdout, stderr, out)
	}
	for _, img := range imgs {
		fmt.Fprintf(stdout, "%s@%s\n", img.Ref, img.Digest)
	}
	return 0
}

// imageEntry is one line of `image ls` (the -o json contract).
type imageEntry struct {
	Reference string    `json:"reference"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	Created   time.Time `json:"created,omitzero"`
	Pulled    time.Time `json:"pulled,omitzero"`
	LastUsed  time.Time `json:"lastUsed,omitzero"`
	UsedBy    []string  `json:"usedBy"`
}

func imageList(store *image.Store, state, output string, stdout, stderr io.Writer, fail func(error) int) int {
	entries, err := store.List()
	if err != nil {
		return fail(err)
	}
	users, err := daemon.ImageUsers(state)
	if err != nil {
		return fail(err)
	}
	out := make([]imageEntry, 0, len(entries))
	for _, e := range entries {
		used := users[e.Digest]
		if used == nil {
			used = []string{}
		}
		out = append(out, imageEntry{Reference: e.Ref, Digest: e.Digest, Size: e.Size, Created: e.Created,
			Pulled: e.Pulled, LastUsed: e.LastUsed, UsedBy: used})
	}
	if output == "json" {
		return printJSON(stdout, stderr, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tDIGEST\tSIZE\tLAST USED\tUSED BY")
	now := time.Now()
	for _, e := range out {
		lastUsed := "never"
		if !e.LastUsed.IsZero() {
			lastUsed = humanAgo(now.Sub(e.LastUsed)) + " ago"
		}
		used := strings.Join(e.UsedBy, ",")
		if used == "" {
			used = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f MB\t%s\t%s\n", e.Reference, shortDigest(e.Digest), float64(e.Size)/1e6, lastUsed, used)
	}
	tw.Flush()
	// The totals in text only (-o json stays the list; `image df -o
	// json` has them).
	if t, err := totalsOf(store); err != nil {
		fmt.Fprintf(stderr, "reconciled image ls: %v\n", err)
	} else {
		fmt.Fprintln(stdout, t.footer())
	}
	return 0
}

// inspectOf is `image inspect`'s JSON: the reference, digest and layers,
// with the image's config as stored.
func inspectOf(img *image.Image) any {
	return struct {
		Reference string          `json:"reference"`
		Digest    string          `json:"digest"`
		Size      int64           `json:"size"`
		Layers    []string        `json:"layers"`
		Config    json.RawMessage `json:"config"`
	}{img.Ref, img.Digest, img.Size, slices.Clone(img.Layers), json.RawMessage(img.ConfigJSON)}
}

func shortDigest(d string) string {
	if h, ok := strings.CutPrefix(d, "sha256:"); ok && len(h) > 12 {
		return "sha256:" + h[:12]
	}
	return d
}

func humanAgo(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// imageExport writes the stored image ref to file as an oci-archive.
func imageExport(ctx context.Context, store *image.Store, ref, file, output string, stdout, stderr io.Writer, fail func(error) int) int {
	img, err := store.ExportFile(ctx, ref, file)
	if err != nil {
		return fail(err)
	}
	if output == "json" {
		return printJSON(stdout, stderr, map[string]any{"reference": img.Ref, "digest": img.Digest, "size": img.Size, "file": file})
	}
	fmt.Fprintf(stdout, "exported %s@%s to %s\n", img.Ref, img.Digest, file)
	return 0
}
