//go:build !reconciled_lean

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/internal/daemon"
)

func init() {
	register(&command{
		name:    "run",
		summary: "run the daemon: keep the containers as the manifests say",
		run:     runDaemon,
	})
}

const runSynopsis = `run [--manifests DIR] [--state DIR] [--log-dir DIR] [--parallel N] [--resync DUR]
               [--cgroup-driver auto|systemd|cgroupfs] [--cgroup-parent DIR|NAME.slice]
               [--log-driver file|journald] [--insecure-manifests]
               [--image-root DIR] [--insecure-registry HOST]... [--registry-config FILE]
               [--image-import-dir DIR]
               [--pull-concurrency N] [--pull-rate BYTES/s]
               [--image-gc-high PCT] [--image-gc-low PCT] [--image-min-age DUR]
               [--subuid-file FILE] [--subgid-file FILE]

Images no manifest names and no container runs are removed, least recently used
first, when the image store's file system is above --image-gc-high % used, down
to --image-gc-low %; none used or pulled within --image-min-age. 'reconciled
status' says "disk pressure" when that cannot bring it below the high mark.

An archive dropped into --image-import-dir (renamed into place, or written in
place: it is read once no process has it open for writing; dotfiles, *.tmp and
*.part are skipped) is imported once, by content digest, and the containers
waiting for its images start; 'reconciled status' lists the imports and their
errors. 'reconciled image export REF FILE' writes such an archive.

Under systemd (Type=notify, see 'reconciled install') the daemon says READY=1 once
it has planned every container, keeps STATUS= up to date, pets the watchdog
(WatchdogSec=) from its reconcile loop, and on SIGHUP (systemctl reload) reads
every manifest and looks at every container again.`

// testBlockFlag wedges the reconcile loop after the given time, so that a
// test can watch systemd's watchdog kill the daemon. Not for production.
const testBlockFlag = "test-block-loop-after"

func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", runSynopsis, stderr)
	var cfg daemon.Config
	fs.StringVar(&cfg.Manifests, "manifests", daemon.DefaultManifests, "directory of manifests (a git checkout or git-sync link works)")
	fs.StringVar(&cfg.State, "state", daemon.DefaultState, "state directory; the runtime's state is under STATE/runtime")
	fs.StringVar(&cfg.LogDir, "log-dir", daemon.DefaultLogDir, "directory of the containers' logs (NAME.log)")
	fs.IntVar(&cfg.Parallel, "parallel", 4, "containers worked on at once")
	fs.DurationVar(&cfg.Resync, "resync", 30*time.Second, "period of the full pass over every container")
	fs.StringVar(&cfg.CgroupDriver, "cgroup-driver", "auto", "cgroup driver: systemd (a transient scope per container in reconciled.slice), cgroupfs, or auto: systemd when it is PID 1 and answers, else cgroupfs")
	fs.StringVar(&cfg.CgroupParent, "cgroup-parent", "", "cgroup directory (cgroupfs) or NAME.slice (systemd) of this daemon's containers (default: the one recorded in STATE/cgroup-parent.json, else /reconciled and reconciled.slice for --state "+daemon.DefaultState+", /reconciled-HASH and reconciled-HASH.slice for another state directory)")
	fs.StringVar(&cfg.LogDriver, "log-driver", daemon.LogDriverFile, "where containers' stdout and stderr go: file (LOGDIR/NAME.log) or journald (SYSLOG_IDENTIFIER=NAME; journalctl -t NAME)")
	// For tests only, hidden from the usage: wedges the loop so that
	// systemd's watchdog must kill the daemon.
	fs.DurationVar(&cfg.TestBlockLoopAfter, testBlockFlag, 0, "")
	fs.BoolVar(&cfg.InsecureManifests, "insecure-manifests", false, "do not refuse manifests that are writable by group or others or not owned by root")
	fs.Int64Var(&cfg.LogMaxSize, "log-max-size", daemon.DefaultLogMaxSize, "rotate a container's log (copytruncate) once it is larger than this many bytes")
	fs.IntVar(&cfg.LogKeep, "log-keep", daemon.DefaultLogKeep, "rotated log files kept per container (NAME.log.1 ...)")
	runtimes := runtimeFlag{}
	fs.Var(runtimes, "runtime", "NAME=PATH: an OCI-CLI runtime (runc-compatible binary) manifests may name in spec.runtime; repeatable; runc and crun are known without it")
	fs.StringVar(&cfg.ImageRoot, "image-root", image.DefaultRoot, "image store: blobs, unpacked layers and references (shared with 'reconciled image')")
	insecure := &listFlag{}
	fs.Var(insecure, "insecure-registry", "HOST or HOST:PORT: a registry that may be reached over plain HTTP (localhost and 127.0.0.1 always may); repeatable")
	fs.StringVar(&cfg.RegistryConfig, "registry-config", image.DefaultRegistryConfig, "docker config.json with registry credentials (auths, credsStore, credHelpers)")
	fs.StringVar(&cfg.ImageImportDir, "image-import-dir", daemon.DefaultImportDir, "directory watched for image archives to import (oci-archive, docker-archive, gzip/zstd or not, or an OCI layout directory), each content once; created 0700; as root, like the manifests, what is in it must be owned by root and not writable by group or others (--insecure-manifests lifts that); empty: none")
	fs.StringVar(&cfg.SubuidFile, "subuid-file", daemon.DefaultSubuidFile, "subordinate UID file: the ranges of user "+daemon.SubIDUser+" give each userns: auto container 65536 host UIDs (e.g. the line "+daemon.SubIDUser+":100000:65536000)")
	fs.StringVar(&cfg.SubgidFile, "subgid-file", daemon.DefaultSubgidFile, "subordinate GID file, as --subuid-file for GIDs")
	fs.IntVar(&cfg.PullConcurrency, "pull-concurrency", image.DefaultPullConcurrency, pullConcurrencyUsage)
	fs.Var(rateFlag{&cfg.PullRate}, "pull-rate", pullRateUsage)
	gc := image.DefaultGCPolicy
	fs.Float64Var(&gc.HighPercent, "image-gc-high", image.DefaultGCHighPercent, "percent of the image store's file system in use above which unused images are removed, least recently used first (100: never)")
	fs.Float64Var(&gc.LowPercent, "image-gc-low", image.DefaultGCLowPercent, "percent of the image store's file system in use down to which the image GC removes")
	fs.DurationVar(&gc.MinAge, "image-min-age", image.DefaultGCMinAge, "an image used or pulled more recently is never removed by the image GC")
	cfg.ImageGC = &gc
	logFormat := fs.String("log-format", "text", "format of the daemon's own log on stderr: text or json")
	debug := fs.Bool("debug", false, "log debug messages")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: reconciled %s\n", runSynopsis)
		shown := flag.NewFlagSet("run", flag.ContinueOnError)
		shown.SetOutput(stderr)
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name != testBlockFlag {
				shown.Var(f.Value, f.Name, f.Usage)
			}
		})
		shown.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	cfg.InsecureRegistries = *insecure
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "reconciled run: unexpected argument %q\n", pos[0])
		fs.Usage()
		return 2
	}
	cfg.Runtimes = runtimes
	if cfg.Parallel < 1 {
		fmt.Fprintf(stderr, "reconciled run: --parallel %d: must be at least 1\n", cfg.Parallel)
		return 2
	}
	if cfg.PullConcurrency < 1 {
		fmt.Fprintf(stderr, "reconciled run: --pull-concurrency %d: must be at least 1\n", cfg.PullConcurrency)
		return 2
	}
	if cfg.Resync < time.Second {
		fmt.Fprintf(stderr, "reconciled run: --resync %s: must be at least 1s\n", cfg.Resync)
		return 2
	}
	if err := gc.Check(); err != nil {
		fmt.Fprintf(stderr, "reconciled run: --image-gc-high/--image-gc-low/--image-min-age: %v\n", err)
		return 2
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch *logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		fmt.Fprintf(stderr, "reconciled run: --log-format %q: use text or json\n", *logFormat)
		return 2
	}
	if err := daemon.CheckDriverNames(cfg.CgroupDriver, cfg.LogDriver); err != nil {
		fmt.Fprintf(stderr, "reconciled run: %v\n", err)
		return 2
	}
	// SIGHUP (systemctl reload): a full rescan.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-hup:
				select {
				case reload <- struct{}{}:
				default:
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	cfg.Reload = reload
	if err := daemon.Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "reconciled run: %v\n", err)
		return 1
	}
	return 0
}

// runtimeFlag is --runtime NAME=PATH, repeatable.
type runtimeFlag map[string]string

func (r runtimeFlag) String() string {
	var parts []string
	for n, p := range r {
		parts = append(parts, n+"="+p)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (r runtimeFlag) Set(v string) error {
	name, path, ok := strings.Cut(v, "=")
	switch {
	case !ok || name == "" || path == "":
		return fmt.Errorf("%q: use NAME=PATH, e.g. runc=/usr/local/bin/runc", v)
	case name == "native":
		return fmt.Errorf("%q: native is reconciled's own executor and cannot be replaced", v)
	case !desired.ValidRuntimeName(name):
		return fmt.Errorf("%q: the name must be lower-case letters, digits, '-' and '_' (at most 63), as spec.runtime takes it", v)
	case !filepath.IsAbs(path):
		return fmt.Errorf("%q: the path must be absolute", v)
	}
	if _, dup := r[name]; dup {
		return fmt.Errorf("%q: runtime %s given twice", v, name)
	}
	r[name] = path
	return nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	if v == "" {
		return fmt.Errorf("must not be empty")
	}
	*l = append(*l, v)
	return nil
}

// Usage of the pull flags that `run` and `image pull` share.
const (
	pullConcurrencyUsage = "blobs (layers) the image store fetches at once, all pulls together"
	pullRateUsage        = "cap on the image store's download rate in bytes per second, all pulls together: an integer, or with a decimal (k M G) or binary (Ki Mi Gi) suffix, e.g. 2M = 2000000, 512Ki = 524288; 0: unlimited"
)

// rateFlag is --pull-rate: bytes per second, a quantity as manifests
// write them (desired.ParseQuantity: a plain integer, or with k M G for
// powers of 1000 or Ki Mi Gi for powers of 1024), optionally followed by
// "/s", that comes to a whole number of bytes. 0 means unlimited.
type rateFlag struct{ v *int64 }

func (r rateFlag) String() string {
	if r.v == nil || *r.v == 0 {
		return "0"
	}
	return desired.FormatBytes(*r.v)
}

func (r rateFlag) Set(s string) error {
	q, err := desired.ParseQuantity(strings.TrimSuffix(s, "/s"))
	if err != nil {
		return fmt.Errorf("%q: %v; use bytes per second, e.g. 1000000, 2M or 512Ki", s, err)
	}
	if !q.IsInt() {
		return fmt.Errorf("%q: not a whole number of bytes", s)
	}
	if n := q.Num(); !n.IsInt64() || n.Int64() > 1<<50 {
		return fmt.Errorf("%q: too large", s)
	}
	*r.v = q.Num().Int64()
	return nil
}
