package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/image/layer"
	"reconciled.dev/reconciled/internal/sys"
)

// Nothing of a container outlives it. What the daemon keeps of container
// NAME under the state directory (bundles/NAME, rootfs/NAME and rw/NAME
// of an image container, containers/NAME.json) goes with it: Delete
// removes it, a failed create that left no container removes it at once
// (cleaningExecutor), and a daemon that starts removes what an earlier
// one left of containers that no longer exist (pruneLeftovers; a daemon
// killed in the middle of a create). A container exists while its
// runtime state (runtime/NAME) does: nothing of one whose state is there,
// or cannot be looked at, is ever removed here. Its log file stays.

// cleaningExecutor is the loop's executor: the runtimeAdapter, with what
// a failed create leaves removed when no container came of it. The loop
// writes the record first and never works on one container twice at once,
// so nothing else is creating the container meanwhile.
type cleaningExecutor struct {
	*runtimeAdapter
}

func (a cleaningExecutor) Create(ctx context.Context, id string, spec *specs.Spec) error {
	err := a.runtimeAdapter.Create(ctx, id, spec)
	a.cleanFailed(ctx, id, err)
	return err
}

// CreateStart is reconciler.CreateStarter; what a failed create leaves
// goes as with Create, what a failed start leaves as with Start.
func (a cleaningExecutor) CreateStart(ctx context.Context, id string, spec *specs.Spec) (bool, error) {
	created, err := a.runtimeAdapter.CreateStart(ctx, id, spec)
	if !created {
		a.cleanFailed(ctx, id, err)
	}
	return created, err
}

// cleanFailed removes what a create that failed with err left, where no
// container came of it.
func (a cleaningExecutor) cleanFailed(ctx context.Context, id string, err error) {
	if err == nil || hasRuntimeState(a.layout, id) {
		return // a container to delete, with all it has, as usual
	}
	if cerr := removeLeftovers(context.WithoutCancel(ctx), a.layout, id, a.store.Forget); cerr != nil {
		a.log.Warn("unable to remove what a failed create left", "container", id, "err", cerr)
	}
}

// hasRuntimeState says whether container name exists: its runtime state
// is there, or may be (it cannot be looked at).
func hasRuntimeState(layout Layout, name string) bool {
	_, err := os.Lstat(executor.StateDir(layout.Runtime(), name))
	return !errors.Is(err, fs.ErrNotExist)
}

// removeLeftovers removes what the daemon keeps of container name, which
// does not exist: its root filesystem (unmounted first) and writable
// layer, its bundle and its record (forget; nil leaves the record file to
// the caller). A mount is never crossed.
func removeLeftovers(ctx context.Context, layout Layout, name string, forget func(context.Context, string) error) error {
	var errs []error
	rootfs := layout.Rootfs(name)
	if err := layer.Unmount(rootfs); err != nil {
		// The writable layer may be the mount's upper layer: leave both.
		errs = append(errs, err)
	} else {
		for _, p := range []string{rootfs, layout.RW(name)} {
			if err := sys.RemoveTree(p); err != nil {
				errs = append(errs, fmt.Errorf("unable to remove %s: %w", p, err))
			}
		}
	}
	if err := sys.RemoveTree(layout.Bundle(name)); err != nil {
		errs = append(errs, fmt.Errorf("unable to remove %s: %w", layout.Bundle(name), err))
	}
	if forget != nil {
		if err := forget(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pruneLeftovers removes, as the daemon starts (before anything is
// created), what is left under the state directory of containers that do
// not exist: neither runtime state nor a record (known: the records, which
// pruneRecords has already cut down to those with runtime state). The
// record files left are those that could not be read; half-written temp
// files (.NAME.json.tmp…) go too. It returns the names it cleaned up.
// Entries whose names are not container names are left alone.
func pruneLeftovers(ctx context.Context, layout Layout, known func(string) bool, log *slog.Logger) ([]string, error) {
	names := map[string]bool{}
	var errs []error
	for _, dir := range []string{layout.Bundles(), filepath.Dir(layout.Rootfs("x")), filepath.Dir(layout.RW("x"))} {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unable to list %s: %w", dir, err))
		}
		for _, e := range entries {
			if executor.ValidateID(e.Name()) == nil {
				names[e.Name()] = true
			}
		}
	}
	entries, err := os.ReadDir(layout.Records())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("unable to list %s: %w", layout.Records(), err))
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".json.tmp") && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(layout.Records(), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && e.Type().IsRegular() && executor.ValidateID(n) == nil {
			names[n] = true
		}
	}
	var pruned []string
	for name := range names {
		if ctx.Err() != nil {
			break
		}
		if known(name) || hasRuntimeState(layout, name) {
			continue
		}
		forget := func(context.Context, string) error {
			p := filepath.Join(layout.Records(), name+".json")
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			return nil
		}
		if err := removeLeftovers(ctx, layout, name, forget); err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", name, err))
			continue
		}
		log.Info("removed what a container that no longer exists left behind", "container", name)
		pruned = append(pruned, name)
	}
	return pruned, errors.Join(errs...)
}
