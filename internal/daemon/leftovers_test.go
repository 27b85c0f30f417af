package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/image/layer"
	"reconciled.dev/reconciled/internal/testutil"
)

// plant creates the files (and the directories that hold them) under
// root, each with the content of its name.
func plant(t *testing.T, root string, files ...string) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// A fake state directory: what containers that no longer exist left
// (neither runtime state nor a record) goes at the start; nothing of a
// container whose runtime state is there, or that has a record, is
// touched; nor is anything whose name is not a container's.
func TestPruneLeftovers(t *testing.T) {
	state := t.TempDir()
	layout := Layout(state)
	plant(t, state,
		// live: runtime state, so everything stays, even without a record.
		"runtime/live/state.json", "bundles/live/config.json", "rootfs/live/etc/hostname",
		"rw/live/upper/file", "rw/live/work/x", "containers/live.json",
		// recorded: a record the store read (known), without runtime
		// state: pruneRecords' business, not this one's.
		"containers/recorded.json", "bundles/recorded/config.json",
		// ghost: a failed create's bundle, record (unreadable) and layer.
		"bundles/ghost/config.json", "rootfs/ghost/.keep", "rw/ghost/upper/big", "rw/ghost/work/w",
		"containers/ghost.json",
		// only a bundle, only a writable layer, only a record.
		"bundles/orphan/config.json", "rw/layer-only/upper/f", "containers/record-only.json",
		// a record half-written by a daemon that died mid-write.
		"containers/.web.json.tmp12345",
		// not container names: left alone.
		"bundles/.hidden/config.json", "bundles/bad name/config.json", "containers/notes.txt",
	)
	if err := os.WriteFile(filepath.Join(state, "containers/ghost.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	known := func(n string) bool { return n == "recorded" }
	pruned, err := pruneLeftovers(context.Background(), layout, known, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(pruned)
	if want := []string{"ghost", "layer-only", "orphan", "record-only"}; !slices.Equal(pruned, want) {
		t.Errorf("pruned %q, want %q", pruned, want)
	}
	for _, p := range []string{"bundles/ghost", "rootfs/ghost", "rw/ghost", "containers/ghost.json",
		"bundles/orphan", "rw/layer-only", "containers/record-only.json", "containers/.web.json.tmp12345"} {
		if exists(filepath.Join(state, p)) {
			t.Errorf("%s left behind", p)
		}
	}
	for _, p := range []string{"runtime/live/state.json", "bundles/live/config.json", "rootfs/live/etc/hostname",
		"rw/live/upper/file", "rw/live/work/x", "containers/live.json",
		"containers/recorded.json", "bundles/recorded/config.json",
		"bundles/.hidden/config.json", "bundles/bad name/config.json", "containers/notes.txt",
		"bundles", "rootfs", "rw", "containers", "runtime"} {
		if !exists(filepath.Join(state, p)) {
			t.Errorf("%s removed", p)
		}
	}
	// Nothing left to do the second time.
	if pruned, err := pruneLeftovers(context.Background(), layout, known, slog.New(slog.DiscardHandler)); err != nil || len(pruned) != 0 {
		t.Errorf("second prune: %q, %v", pruned, err)
	}
}

// The root filesystem of an image container that no longer exists is
// unmounted before it goes, and what was mounted there is not removed
// through the mount; a live container's mount stays.
func TestPruneLeftoversUnmounts(t *testing.T) {
	testutil.RequireRoot(t)
	state := t.TempDir()
	layout := Layout(state)
	plant(t, state, "runtime/live/state.json", "rw/ghost/upper/f", "rw/ghost/work/w")
	for _, name := range []string{"ghost", "live"} {
		target := layout.Rootfs(name)
		if err := os.MkdirAll(target, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", target, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { layer.Unmount(target) })
		plant(t, target, "etc/hostname")
	}
	// A second mount stacked on the first, as a retried mount may leave.
	if err := unix.Mount("tmpfs", layout.Rootfs("ghost"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	pruned, err := pruneLeftovers(context.Background(), layout, func(string) bool { return false }, slog.New(slog.DiscardHandler))
	if err != nil || !slices.Equal(pruned, []string{"ghost"}) {
		t.Fatalf("pruned %q, %v", pruned, err)
	}
	if exists(layout.Rootfs("ghost")) || exists(layout.RW("ghost")) {
		t.Error("the ghost's root filesystem or writable layer is left")
	}
	if m, err := layer.Mounted(layout.Rootfs("live")); err != nil || !m {
		t.Errorf("live container's root filesystem: mounted %v, %v", m, err)
	}
	if !exists(filepath.Join(layout.Rootfs("live"), "etc/hostname")) {
		t.Error("live container's root filesystem emptied")
	}
}
