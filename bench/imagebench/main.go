// Command imagebench compares the daemon's image path with skopeo, umoci
// and crun, side by side in one run: a cold pull+unpack+start of a ~100 MB
// image of 10 layers, the daemon's RSS growth during that pull, the warm
// drop-to-running of an image container against a plain-directory root,
// the import of the image as an oci-archive (against skopeo copy + umoci
// unpack), and the bytes a pull receives when a proxy of ours cuts its
// connection once, half-way through the largest layer. bench/image.sh
// builds and runs it (as root).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/bench/internal/host"
	"reconciled.dev/reconciled/internal/daemon"
)

func main() {
	var (
		rounds    = flag.Int("n", 3, "cold pull+unpack+start rounds (each side, empty store each round)")
		drops     = flag.Int("drops", 50, "warm drops of each kind (image, plain directory), alternated")
		ours      = flag.String("reconciled", "bin/reconciled", "path to the reconciled binary")
		shim      = flag.String("nohybrid", "", "LD_PRELOAD shim that lets crun 1.8 run on a hybrid cgroup layout")
		busybox   = flag.String("busybox", "/bin/busybox", "static busybox for the image's first layer and the plain root")
		work      = flag.String("work", "", "work directory (default: a new one under $TMPDIR)")
		stateIn   = flag.String("state-in", "/dev/shm", "where the daemon's state and crun's root go: a tmpfs, as /run is (empty: the work directory)")
		nLayers   = flag.Int("random-layers", 9, "random-data layers on top of the busybox layer")
		layerMiB  = flag.Float64("layer-mib", 10.5, "size of each random layer, MiB (10.5 MiB = 11 MB)")
		regBinary = flag.String("registry", "/usr/bin/docker-registry", "Debian's docker-registry")
		debug     = flag.Bool("debug", false, "run the daemon with --debug")
		keepLog   = flag.String("daemon-log", "", "copy the daemon's log to this file at the end")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{rounds: *rounds, drops: *drops, shim: *shim, stateIn: *stateIn, id: fmt.Sprintf("imagebench-%d", os.Getpid()), debug: *debug}
	err := b.run(ctx, *ours, *busybox, *work, *regBinary, *nLayers, int64(*layerMiB*(1<<20)))
	if err != nil && b.daemonLog != "" {
		if data, rerr := os.ReadFile(b.daemonLog); rerr == nil {
			fmt.Fprintf(os.Stderr, "imagebench: the daemon's log (last 40 lines):\n%s\n", tail(string(data), 40))
		}
	}
	if *keepLog != "" && b.daemonLog != "" {
		if data, rerr := os.ReadFile(b.daemonLog); rerr == nil {
			if werr := os.WriteFile(*keepLog, data, 0o644); werr != nil {
				fmt.Fprintln(os.Stderr, "imagebench:", werr)
			}
		}
	}
	b.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebench:", err)
		os.Exit(1)
	}
}

type bench struct {
	rounds, drops int
	shim, stateIn string
	id            string // unique prefix of every name of this run
	debug         bool   // the daemon's --debug

	bin                              string
	work, manifests, staging, logDir string
	state, images, sigDir, fifo      string
	plainRoot                        string
	daemonLog                        string
	daemon                           *exec.Cmd
	daemonExited                     chan struct{}
	crunRoot                         string
	cleanups                         []func()
}

func (b *bench) cleanup() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
}

func (b *bench) run(ctx context.Context, ours, busybox, work, regBin string, nLayers int, layerSize int64) error {
	var err error
	if b.bin, err = filepath.Abs(ours); err != nil {
		return err
	}
	if work == "" {
		if work, err = os.MkdirTemp("", "imagebench-"); err != nil {
			return err
		}
		b.cleanups = append(b.cleanups, func() { removeTree(work) }) // runs last: after the unmounts
	}
	b.work = work
	b.manifests = filepath.Join(work, "manifests")
	b.staging = filepath.Join(work, "staging")
	b.logDir = filepath.Join(work, "logs")
	b.images = filepath.Join(work, "images")
	b.sigDir = filepath.Join(work, "sig")
	b.fifo = filepath.Join(b.sigDir, "fifo")
	b.plainRoot = filepath.Join(work, "plainroot")
	b.daemonLog = filepath.Join(work, "daemon.log")
	b.state = filepath.Join(work, "state")
	if b.stateIn != "" {
		if b.state, err = os.MkdirTemp(b.stateIn, b.id+"-state-"); err != nil {
			return err
		}
		state := b.state
		b.cleanups = append(b.cleanups, func() { removeTree(state) })
	}
	state := b.state
	b.cleanups = append(b.cleanups, func() { unmountRootfs(state) })
	for _, d := range []string{b.manifests, b.staging, b.logDir, b.images, b.sigDir, b.plainRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mkfifo(b.fifo, 0o666); err != nil {
		return os.NewSyscallError("mkfifo", err)
	}

	fmt.Println(host.Describe())
	// Other work on the host shows in every figure: say how busy it was.
	fmt.Printf("load average at start: %s\n", loadavg())
	defer func() { fmt.Printf("load average at end: %s\n", loadavg()) }()

	// The image, pushed once to a registry of our own.
	es, err := busyboxEntries(busybox)
	if err != nil {
		return err
	}
	if err := materialize(b.plainRoot, es); err != nil {
		return fmt.Errorf("writing the plain root: %w", err)
	}
	reg, err := startRegistry(ctx, regBin, filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	b.cleanups = append(b.cleanups, reg.stop)
	t0 := time.Now()
	img, err := buildAndPush(ctx, filepath.Join(work, "layers"), reg.addr, b.id+"/big:1", es, nLayers, layerSize)
	if err != nil {
		return err
	}
	fmt.Printf("image %s: %d layers (busybox %.1f MB + %d x %.1f MB random), %.1f MB compressed (gzip); built and pushed in %s\n\n",
		img.ref, img.layers, mb(img.busybox), nLayers, mb(layerSize), mb(img.compressed), secs(time.Since(t0)))

	// The daemon, with nothing to run yet. Containers go before it stops
	// (cleanups run last to first).
	b.cleanups = append(b.cleanups, b.removeEverything)
	if err := b.startDaemon(ctx); err != nil {
		return err
	}
	var first daemon.Report
	if err := daemon.Query(ctx, b.state, "/v1/status", &first); err != nil {
		return err
	}
	fmt.Printf("reconciled run --state %s --image-root %s: pid %d, cgroup driver %s\n", b.state, b.images, b.daemon.Process.Pid, first.CgroupDriver)
	b.crunRoot = filepath.Join(b.state, "crun")
	var crunEnv []string
	if b.shim != "" {
		crunEnv = []string{"LD_PRELOAD=" + b.shim}
		fmt.Printf("crun with the nohybrid shim (%s)\n", b.shim)
	}
	fmt.Println()

	// 1 and 2: cold pull + unpack + start, and the daemon's RSS meanwhile.
	fmt.Printf("1. cold pull + unpack + start, %d rounds, empty store each round (ms)\n", b.rounds)
	var oursT, theirsT, skopeoT, umociT, crunT []time.Duration
	var rssGrowth, rssBefore []int64
	for i := 0; i < b.rounds; i++ {
		doOurs := func() error {
			d, grow, before, err := b.coldOurs(ctx, img.ref, i)
			if err != nil {
				return fmt.Errorf("cold round %d, reconciled: %w", i+1, err)
			}
			oursT, rssGrowth, rssBefore = append(oursT, d), append(rssGrowth, grow), append(rssBefore, before)
			return nil
		}
		var st steps
		doTheirs := func() error {
			var err error
			if st, err = b.coldTheirs(ctx, img.ref, i, crunEnv); err != nil {
				return fmt.Errorf("cold round %d, skopeo+umoci+crun: %w", i+1, err)
			}
			theirsT = append(theirsT, st.total())
			skopeoT, umociT, crunT = append(skopeoT, st.skopeo), append(umociT, st.umoci), append(crunT, st.crun)
			return nil
		}
		// Alternate which goes first, so neither always meets the other's
		// dirty page cache.
		order := []func() error{doOurs, doTheirs}
		if i%2 == 1 {
			order = []func() error{doTheirs, doOurs}
		}
		for _, f := range order {
			if err := f(); err != nil {
				return err
			}
		}
		fmt.Printf("  round %d: reconciled %s (daemon RSS +%.1f MiB)   skopeo+umoci+crun %s (skopeo %s, umoci %s, crun run %s)\n",
			i+1, ms(oursT[i]), kib2mib(rssGrowth[i]), ms(theirsT[i]), ms(st.skopeo), ms(st.umoci), ms(st.crun))
	}
	mo, mt := median(oursT), median(theirsT)
	fmt.Printf("  median:  reconciled %s   skopeo+umoci+crun %s (skopeo %s, umoci %s, crun run %s)\n",
		ms(mo), ms(mt), ms(median(skopeoT)), ms(median(umociT)), ms(median(crunT)))
	fmt.Printf("  ratio reconciled / skopeo+umoci+crun: %.2fx (goal <= 0.5x)\n\n", float64(mo)/float64(mt))

	var growths []string
	var maxGrowth int64
	for _, g := range rssGrowth {
		growths = append(growths, fmt.Sprintf("%.1f", kib2mib(g)))
		maxGrowth = max(maxGrowth, g)
	}
	fmt.Printf("2. daemon RSS during a cold pull (VmRSS every 10 ms): peak minus just before the drop: %s MiB; max %.1f MiB (goal < 30 MiB); before the drop %.1f MiB\n\n",
		strings.Join(growths, ", "), kib2mib(maxGrowth), kib2mib(median64(rssBefore)))

	// 3. Warm drop to running.
	if b.drops > 0 {
		imgM := func(name string) string { return b.manifest(name, "image: "+img.ref) }
		dirM := func(name string) string {
			return b.manifest(name, fmt.Sprintf("root: {path: %s, readonly: true}", b.plainRoot))
		}
		// One of each first, untimed: the image is pulled again (the last
		// cold round removed it) and both paths are warm.
		for _, w := range []struct {
			name string
			m    func(string) string
		}{{b.id + "-warmup-img", imgM}, {b.id + "-warmup-dir", dirM}} {
			if _, err := b.drop(ctx, w.name, w.m(w.name), 5*time.Minute); err != nil {
				return fmt.Errorf("warm-up %s: %w", w.name, err)
			}
			if err := b.remove(ctx, w.name); err != nil {
				return err
			}
		}
		var imgT, dirT []time.Duration
		for i := 0; i < b.drops; i++ {
			kinds := []string{"img", "dir"}
			if i%2 == 1 {
				kinds = []string{"dir", "img"}
			}
			for _, k := range kinds {
				name := fmt.Sprintf("%s-%s-%04d", b.id, k, i)
				m := imgM
				if k == "dir" {
					m = dirM
				}
				d, err := b.drop(ctx, name, m(name), 30*time.Second)
				if err != nil {
					return fmt.Errorf("warm drop %s: %w", name, err)
				}
				if k == "img" {
					imgT = append(imgT, d)
				} else {
					dirT = append(dirT, d)
				}
				if err := b.remove(ctx, name); err != nil {
					return err
				}
			}
		}
		fmt.Printf("3. warm drop to running (rename of the manifest to the FIFO read), %d of each, alternated\n", b.drops)
		fmt.Printf("  image (%d-layer overlay): p50 %s  p90 %s  min %s  max %s\n", img.layers,
			ms(percentile(imgT, 0.5)), ms(percentile(imgT, 0.9)), ms(percentile(imgT, 0)), ms(percentile(imgT, 1)))
		fmt.Printf("  plain directory root:    p50 %s  p90 %s  min %s  max %s\n",
			ms(percentile(dirT, 0.5)), ms(percentile(dirT, 0.9)), ms(percentile(dirT, 0)), ms(percentile(dirT, 1)))
		fmt.Printf("  p50 image - p50 plain: %+.2f ms (goal: within 1 ms)\n\n",
			float64(percentile(imgT, 0.5)-percentile(dirT, 0.5))/1e6)
	}

	// 4. Import of an oci-archive; 5. a pull cut in the middle of a blob.
	if err := b.importSection(ctx, img); err != nil {
		return err
	}
	return b.resumeSection(ctx, img, reg.addr)
}

// manifest is a container that signals its start through the FIFO; root is
// the spec line that names its root (image or root.path).
func (b *bench) manifest(name, root string) string {
	return fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata: {name: %s}
spec:
  %s
  command: ["/bin/sh", "-c", "echo up > /sig/fifo; exec sleep 1000"]
  mounts:
    - {type: bind, source: %s, target: /sig}
  restart: never
  stop: {signal: SIGKILL, timeout: 1s}
`, name, root, b.sigDir)
}

// coldOurs drops a manifest naming the image into an empty store and
// returns the time to the FIFO read, and the daemon's VmRSS peak minus its
// value just before the drop (KiB) with that value; then removes the
// container and the image.
func (b *bench) coldOurs(ctx context.Context, ref string, i int) (time.Duration, int64, int64, error) {
	if n, err := storeEntries(b.images); err != nil || n != 0 {
		return 0, 0, 0, fmt.Errorf("the image store is not empty before a cold pull (%d blobs and layers, %v)", n, err)
	}
	name := fmt.Sprintf("%s-cold-%d", b.id, i)
	pid := b.daemon.Process.Pid
	before, err := rssKiB(pid)
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
				if v, err := rssKiB(pid); err == nil && v > peak {
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

// drop stages a manifest, opens the FIFO, renames the manifest into the
// directory and returns the time from the rename to the container's line.
func (b *bench) drop(ctx context.Context, name, manifest string, timeout time.Duration) (time.Duration, error) {
	staged := filepath.Join(b.staging, name+".yaml")
	if err := os.WriteFile(staged, []byte(manifest), 0o644); err != nil {
		return 0, err
	}
	fd, err := b.openFIFO()
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	t0 := time.Now()
	if err := os.Rename(staged, filepath.Join(b.manifests, name+".yaml")); err != nil {
		return 0, err
	}
	if err := b.waitFIFO(ctx, fd, name, timeout); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return time.Since(t0), nil
}

// openFIFO opens the read end without waiting for a writer: poll then
// reports POLLIN once the container has written, not before (Linux reports
// no hangup on a FIFO that never had a writer since the open).
func (b *bench) openFIFO() (int, error) {
	fd, err := unix.Open(b.fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("open "+b.fifo, err)
	}
	return fd, nil
}

// waitFIFO waits until the FIFO has data and reads it. While it waits it
// looks at the daemon (when name is set) once a second, so that a
// container that failed is reported with the daemon's reason instead of
// a timeout.
func (b *bench) waitFIFO(ctx context.Context, fd int, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 1000)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return os.NewSyscallError("poll", err)
		}
		if n > 0 && fds[0].Revents&unix.POLLIN != 0 {
			buf := make([]byte, 64)
			k, err := unix.Read(fd, buf)
			if err != nil {
				return os.NewSyscallError("read fifo", err)
			}
			if got := string(buf[:k]); got != "up\n" {
				return fmt.Errorf("the FIFO said %q", got)
			}
			return nil
		}
		if n > 0 && fds[0].Revents&unix.POLLHUP != 0 {
			return errors.New("the FIFO was closed without a line")
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if name != "" {
			select {
			case <-b.daemonExited:
				return errors.New("the daemon exited")
			default:
			}
			if c, err := b.status(ctx, name); err == nil && c != nil {
				if c.Phase == "invalid" || c.Phase == "exited" || c.Phase == "backoff" {
					return fmt.Errorf("phase %s: %s %s", c.Phase, c.Message, c.LastError)
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("not up after %s: phase %s: %s %s", timeout, c.Phase, c.Message, c.LastError)
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not up after %s", timeout)
		}
	}
}

// status is the daemon's status of name, nil when it lists no such
// container (what `reconciled status -o json` prints, over the same
// socket).
func (b *bench) status(ctx context.Context, name string) (*daemon.ContainerStatus, error) {
	var rep daemon.Report
	if err := daemon.Query(ctx, b.state, "/v1/status", &rep); err != nil {
		return nil, err
	}
	for i := range rep.Containers {
		if rep.Containers[i].Name == name {
			return &rep.Containers[i], nil
		}
	}
	return nil, nil
}

// remove deletes name's manifest and waits until the daemon no longer
// lists it.
func (b *bench) remove(ctx context.Context, name string) error {
	if err := os.Remove(filepath.Join(b.manifests, name+".yaml")); err != nil && !os.IsNotExist(err) {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := b.status(ctx, name)
		if err == nil && c == nil {
			return nil
		}
		if time.Now().After(deadline) {
			if c != nil {
				return fmt.Errorf("%s still listed after 60 s: phase %s: %s %s", name, c.Phase, c.Message, c.LastError)
			}
			return fmt.Errorf("%s: status: %v", name, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// imageRm removes the image from the store with the CLI (refused while a
// container uses it: the status files may lag the removal a moment) and
// checks that no blob or layer is left.
func (b *bench) imageRm(ctx context.Context, ref string) error {
	var err error
	for try := 0; try < 50; try++ {
		if err = command(ctx, nil, b.bin, "image", "rm", "--image-root", b.images, "--state", b.state, ref); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if n, err := storeEntries(b.images); err != nil || n != 0 {
		return fmt.Errorf("image rm %s left %d blobs and layers in %s (%v)", ref, n, b.images, err)
	}
	return nil
}

// storeEntries counts the blobs and unpacked layers in an image store.
func storeEntries(root string) (int, error) {
	n := 0
	for _, d := range []string{"blobs/sha256", "layers/sha256"} {
		es, err := os.ReadDir(filepath.Join(root, d))
		if err != nil && !os.IsNotExist(err) {
			return n, err
		}
		n += len(es)
	}
	return n, nil
}

func (b *bench) startDaemon(ctx context.Context) error {
	logf, err := os.OpenFile(b.daemonLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(b.bin, "run", "--manifests", b.manifests, "--state", b.state, "--log-dir", b.logDir,
		"--image-root", b.images)
	if b.debug {
		cmd.Args = append(cmd.Args, "--debug")
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	b.daemon = cmd
	b.daemonExited = make(chan struct{})
	go func() { cmd.Wait(); close(b.daemonExited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rep daemon.Report
		if err := daemon.Query(ctx, b.state, "/v1/status", &rep); err == nil && rep.Daemon.Loaded {
			return nil
		}
		select {
		case <-b.daemonExited:
			return fmt.Errorf("the daemon exited; see %s", b.daemonLog)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the daemon does not answer")
		}
	}
}

// removeEverything removes our manifests and waits for their containers,
// stops the daemon with SIGTERM and deletes whatever container it left, and
// any crun container of ours.
func (b *bench) removeEverything() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if b.daemon != nil {
		entries, _ := os.ReadDir(b.manifests)
		for _, e := range entries {
			name, ok := strings.CutSuffix(e.Name(), ".yaml")
			if ok && strings.HasPrefix(name, b.id) {
				if err := b.remove(ctx, name); err != nil {
					fmt.Fprintln(os.Stderr, "imagebench: cleanup:", err)
				}
			}
		}
		b.daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.daemonExited:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "imagebench: the daemon did not stop on SIGTERM; killing it")
			b.daemon.Process.Kill()
			<-b.daemonExited
		}
		b.daemon = nil
	}
	root := filepath.Join(b.state, "runtime")
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if err := command(ctx, nil, b.bin, "runtime", "--root", root, "delete", "--force", e.Name()); err != nil {
			fmt.Fprintln(os.Stderr, "imagebench: cleanup:", err)
		}
	}
	if b.crunRoot != "" {
		entries, _ := os.ReadDir(b.crunRoot)
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), b.id) {
				var env []string
				if b.shim != "" {
					env = []string{"LD_PRELOAD=" + b.shim}
				}
				b.crunDelete(e.Name(), env)
			}
		}
	}
}

// command runs a tool with stdio on a file (a started container inherits
// it: a pipe would keep us waiting) and returns its output with any error.
func command(ctx context.Context, env []string, name string, args ...string) error {
	out, err := os.CreateTemp("", "imagebench-out-")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(out.Name())
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(data))
	}
	return nil
}

// unmountRootfs unmounts the image roots the daemon mounted under
// STATE/rootfs and then its shared bind of STATE/rootfs itself, so that
// the state directory holds no mount when it is removed.
func unmountRootfs(state string) {
	rootfs := filepath.Join(state, "rootfs")
	entries, _ := os.ReadDir(rootfs)
	for _, e := range entries {
		for unix.Unmount(filepath.Join(rootfs, e.Name()), unix.MNT_DETACH) == nil {
		}
	}
	for unix.Unmount(rootfs, unix.MNT_DETACH) == nil {
	}
}

// removeTree is rm -rf --one-file-system: a mount left behind stops it
// instead of being emptied.
func removeTree(dir string) {
	if out, err := exec.Command("rm", "-rf", "--one-file-system", dir).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "imagebench: removing %s: %v: %s\n", dir, err, out)
	}
}

func rssKiB(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(data))[:3], " ")
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func median64(v []int64) int64 {
	ds := make([]time.Duration, len(v))
	for i, x := range v {
		ds[i] = time.Duration(x)
	}
	return int64(median(ds))
}

func ms(d time.Duration) string   { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
func mb(n int64) float64          { return float64(n) / 1e6 }
func kib2mib(k int64) float64     { return float64(k) / 1024 }
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
