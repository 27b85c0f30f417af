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
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/bench/internal/daemonproc"
	"reconciled.dev/reconciled/bench/internal/host"
	"reconciled.dev/reconciled/bench/internal/measure"
	"reconciled.dev/reconciled/internal/daemon"
	"reconciled.dev/reconciled/internal/testutil/regserver"
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
	daemon                           *daemonproc.Daemon
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
	b.cleanups = append(b.cleanups, func() { daemonproc.UnmountRootfs(state) })
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
	reg, err := regserver.Start(ctx, regserver.Config{Bin: regBin, Dir: filepath.Join(work, "registry")})
	if err != nil {
		return err
	}
	b.cleanups = append(b.cleanups, func() {
		if err := reg.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "imagebench:", err)
		}
	})
	t0 := time.Now()
	img, err := buildAndPush(ctx, filepath.Join(work, "layers"), reg.Addr, b.id+"/big:1", es, nLayers, layerSize)
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
	fmt.Printf("reconciled run --state %s --image-root %s: pid %d, cgroup driver %s\n", b.state, b.images, b.daemon.Pid(), first.CgroupDriver)
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
		if err := alternate(i, doOurs, doTheirs); err != nil {
			return err
		}
		fmt.Printf("  round %d: reconciled %s (daemon RSS +%.1f MiB)   skopeo+umoci+crun %s (skopeo %s, umoci %s, crun run %s)\n",
			i+1, measure.MS(oursT[i]), kib2mib(rssGrowth[i]), measure.MS(theirsT[i]), measure.MS(st.skopeo), measure.MS(st.umoci), measure.MS(st.crun))
	}
	mo, mt := measure.Median(oursT), measure.Median(theirsT)
	fmt.Printf("  median:  reconciled %s   skopeo+umoci+crun %s (skopeo %s, umoci %s, crun run %s)\n",
		measure.MS(mo), measure.MS(mt), measure.MS(measure.Median(skopeoT)), measure.MS(measure.Median(umociT)), measure.MS(measure.Median(crunT)))
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
			measure.MS(measure.Percentile(imgT, 0.5)), measure.MS(measure.Percentile(imgT, 0.9)), measure.MS(measure.Percentile(imgT, 0)), measure.MS(measure.Percentile(imgT, 1)))
		fmt.Printf("  plain directory root:    p50 %s  p90 %s  min %s  max %s\n",
			measure.MS(measure.Percentile(dirT, 0.5)), measure.MS(measure.Percentile(dirT, 0.9)), measure.MS(measure.Percentile(dirT, 0)), measure.MS(measure.Percentile(dirT, 1)))
		fmt.Printf("  p50 image - p50 plain: %+.2f ms (goal: within 1 ms)\n\n",
			float64(measure.Percentile(imgT, 0.5)-measure.Percentile(dirT, 0.5))/1e6)
	}

	// 4. Import of an oci-archive; 5. a pull cut in the middle of a blob.
	if err := b.importSection(ctx, img); err != nil {
		return err
	}
	return b.resumeSection(ctx, img, reg.Addr)
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
