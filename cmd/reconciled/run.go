package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

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
               [--cgroup-driver auto|systemd|cgroupfs] [--insecure-manifests]`

func runDaemon(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", runSynopsis, stderr)
	var cfg daemon.Config
	fs.StringVar(&cfg.Manifests, "manifests", daemon.DefaultManifests, "directory of manifests (a git checkout or git-sync link works)")
	fs.StringVar(&cfg.State, "state", daemon.DefaultState, "state directory; the runtime's state is under STATE/runtime")
	fs.StringVar(&cfg.LogDir, "log-dir", daemon.DefaultLogDir, "directory of the containers' logs (NAME.log)")
	fs.IntVar(&cfg.Parallel, "parallel", 4, "containers worked on at once")
	fs.DurationVar(&cfg.Resync, "resync", 30*time.Second, "period of the full pass over every container")
	fs.StringVar(&cfg.CgroupDriver, "cgroup-driver", "auto", "cgroup driver: auto, cgroupfs or systemd (not available yet)")
	fs.BoolVar(&cfg.InsecureManifests, "insecure-manifests", false, "do not refuse manifests that are writable by group or others or not owned by root")
	fs.Int64Var(&cfg.LogMaxSize, "log-max-size", daemon.DefaultLogMaxSize, "rotate a container's log (copytruncate) once it is larger than this many bytes")
	fs.IntVar(&cfg.LogKeep, "log-keep", daemon.DefaultLogKeep, "rotated log files kept per container (NAME.log.1 ...)")
	logFormat := fs.String("log-format", "text", "format of the daemon's own log on stderr: text or json")
	debug := fs.Bool("debug", false, "log debug messages")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "reconciled run: unexpected argument %q\n", pos[0])
		fs.Usage()
		return 2
	}
	if cfg.Parallel < 1 {
		fmt.Fprintf(stderr, "reconciled run: --parallel %d: must be at least 1\n", cfg.Parallel)
		return 2
	}
	if cfg.Resync < time.Second {
		fmt.Fprintf(stderr, "reconciled run: --resync %s: must be at least 1s\n", cfg.Resync)
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
	switch cfg.CgroupDriver {
	case "auto", "cgroupfs":
	default:
		// systemd (not available yet) or a typo: a usage error.
		_, err := daemon.NewCgroupDriver(cfg.CgroupDriver)
		fmt.Fprintf(stderr, "reconciled run: %v\n", err)
		return 2
	}
	if err := daemon.Run(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "reconciled run: %v\n", err)
		return 1
	}
	return 0
}
