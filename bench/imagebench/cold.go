package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/bench/internal/measure"
)

// coldOurs drops a manifest naming the image into an empty store and
// returns the time to the FIFO read, and the daemon's VmRSS peak minus its
// value just before the drop (KiB) with that value; then removes the
// container and the image.
func (b *bench) coldOurs(ctx context.Context, ref string, i int) (time.Duration, int64, int64, error) {
	if n, err := storeEntries(b.images); err != nil || n != 0 {
		return 0, 0, 0, fmt.Errorf("the image store is not empty before a cold pull (%d blobs and layers, %v)", n, err)
	}
	name := fmt.Sprintf("%s-cold-%d", b.id, i)
	pid := b.daemon.Pid()
	before, err := measure.RSSKiB(pid)
	if err != nil {
		return 0, 0, 0, err
	}
	var (
		peak     = before
		stopSamp = make(chan struct{})
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSamp:
				return
			case <-tick.C:
				if v, err := measure.RSSKiB(pid); err == nil && v > peak {
					peak = v
				}
			}
		}
	}()
	d, err := b.drop(ctx, name, b.manifest(name, "image: "+ref), 10*time.Minute)
	close(stopSamp)
	wg.Wait()
	if err != nil {
		return 0, 0, 0, err
	}
	if err := b.remove(ctx, name); err != nil {
		return 0, 0, 0, err
	}
	if err := b.imageRm(ctx, ref); err != nil {
		return 0, 0, 0, err
	}
	return d, peak - before, before, nil
}

type steps struct{ skopeo, umoci, crun time.Duration }

func (s steps) total() time.Duration { return s.skopeo + s.umoci + s.crun }

// coldTheirs is skopeo copy to an OCI layout, umoci unpack to a bundle and
// crun run of it, each timed; the edit of the bundle's config.json between
// umoci and crun is not. The container is deleted after.
func (b *bench) coldTheirs(ctx context.Context, ref string, i int, crunEnv []string) (steps, error) {
	var st steps
	layout := filepath.Join(b.work, fmt.Sprintf("oci-%d", i))
	bundle := filepath.Join(b.work, fmt.Sprintf("bundle-%d", i))
	id := fmt.Sprintf("%s-crun-%d", b.id, i)
	defer removeTree(layout)
	defer removeTree(bundle)

	t0 := time.Now()
	if err := command(ctx, nil, "skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":1"); err != nil {
		return st, err
	}
	st.skopeo = time.Since(t0)
	t0 = time.Now()
	if err := command(ctx, nil, "umoci", "unpack", "--image", layout+":1", bundle); err != nil {
		return st, err
	}
	st.umoci = time.Since(t0)
	if err := b.editConfig(filepath.Join(bundle, "config.json")); err != nil {
		return st, err
	}
	fd, err := b.openFIFO()
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	defer b.crunDelete(id, crunEnv)
	t0 = time.Now()
	if err := command(ctx, crunEnv, "crun", "--root", b.crunRoot, "run", "--detach", "--bundle", bundle, id); err != nil {
		return st, err
	}
	if err := b.waitFIFO(ctx, fd, "", 60*time.Second); err != nil {
		return st, fmt.Errorf("crun container %s: %w", id, err)
	}
	st.crun = time.Since(t0)
	return st, nil
}

// editConfig makes umoci's config.json run the signalling command without
// a terminal, with the signal directory bind-mounted at /sig.
func (b *bench) editConfig(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	proc, _ := spec["process"].(map[string]any)
	if proc == nil {
		return fmt.Errorf("%s: no process", path)
	}
	proc["terminal"] = false
	proc["args"] = []string{"/bin/sh", "-c", "echo up > /sig/fifo; exec sleep 1000"}
	mounts, _ := spec["mounts"].([]any)
	spec["mounts"] = append(mounts, map[string]any{
		"destination": "/sig", "type": "bind", "source": b.sigDir, "options": []string{"rbind", "rw"},
	})
	if data, err = json.MarshalIndent(spec, "", "  "); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func (b *bench) crunDelete(id string, env []string) {
	if err := command(context.Background(), env, "crun", "--root", b.crunRoot, "delete", "--force", id); err != nil {
		fmt.Fprintln(os.Stderr, "imagebench:", err)
	}
	// In the shim's mode crun leaves an empty cgroup behind in the unified
	// hierarchy (see bench/runtime.sh).
	os.Remove(filepath.Join("/sys/fs/cgroup/unified", id))
}
