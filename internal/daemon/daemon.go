package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/executor/ociruntime"
	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/internal/sys"
	"reconciled.dev/reconciled/reconciler"
)

// Config is what Run needs. Zero values take the defaults.
type Config struct {
	Manifests string // default DefaultManifests
	State     string // default DefaultState
	LogDir    string // default DefaultLogDir
	// Parallel is how many containers are worked on at once (default 4).
	Parallel int
	// Resync is the period of the full pass (default 30s).
	Resync time.Duration
	// CgroupDriver is auto, cgroupfs or systemd (default auto: systemd
	// when it is PID 1 and answers, else cgroupfs).
	CgroupDriver string
	// CgroupParent is --cgroup-parent: the cgroupfs directory (and, as
	// NAME.slice or derived from the path, the systemd slice) of this
	// daemon's containers. Empty: the recorded one, else derived from
	// State (see cgroupParent).
	CgroupParent string
	// LogDriver is where the containers' stdout and stderr go:
	// LogDriverFile (default) or LogDriverJournald.
	LogDriver string
	// JournalSocket is journald's stream socket (default
	// JournalStdoutSocket).
	JournalSocket string
	// Reload, when it receives, makes the daemon read every manifest and
	// look at every container again (SIGHUP), telling systemd RELOADING=1
	// and then READY=1.
	Reload <-chan struct{}
	// TestBlockLoopAfter, for tests only, wedges the reconcile loop this
	// long after the start: its heartbeat blocks for good, so systemd's
	// watchdog should kill the daemon.
	TestBlockLoopAfter time.Duration
	// InsecureManifests turns off the loader's ownership and mode check.
	InsecureManifests bool
	// LogMaxSize and LogKeep rule the rotation of the containers' logs
	// (defaults DefaultLogMaxSize, DefaultLogKeep).
	LogMaxSize int64
	LogKeep    int
	Logger     *slog.Logger // default: discard
	// Runtimes are OCI-CLI runtimes by name (manifests' spec.runtime) and
	// binary path, besides runc and crun (looked up in PATH), which they
	// may replace.
	Runtimes map[string]string
	// ImageRoot is the image store (default image.DefaultRoot);
	// InsecureRegistries the registries (host or host:port) that may be
	// reached over plain HTTP besides localhost; RegistryConfig the docker
	// config.json with credentials (default image.DefaultRegistryConfig).
	ImageRoot          string
	InsecureRegistries []string
	RegistryConfig     string
	// PullConcurrency is how many blobs the image store fetches at once
	// (0: image.DefaultPullConcurrency); PullRate caps its download rate
	// in bytes per second, all pulls together (0: unlimited).
	PullConcurrency int
	PullRate        int64
	// ImageGC rules the removal of images no container needs when the
	// image store's file system fills up (nil: image.DefaultGCPolicy);
	// ImageGCEvery is how often that is checked besides after each pull
	// (default DefaultImageGCEvery).
	ImageGC      *image.GCPolicy
	ImageGCEvery time.Duration
	// ImageImportDir is watched for image archives to import into the
	// store (oci-archive, docker-archive, OCI layout directory), each
	// content once, recorded in STATE/imports.json; "" watches none (the
	// command line's default is DefaultImportDir). As root, it is held to
	// the manifests' rule (owned by root, not writable by group or
	// others) unless InsecureManifests.
	ImageImportDir string
	// SubuidFile and SubgidFile are where userns: auto containers' host
	// IDs come from (defaults DefaultSubuidFile, DefaultSubgidFile):
	// the ranges of user SubIDUser.
	SubuidFile, SubgidFile string
}

func (c *Config) defaults() {
	if c.Manifests == "" {
		c.Manifests = DefaultManifests
	}
	if c.State == "" {
		c.State = DefaultState
	}
	if c.LogDir == "" {
		c.LogDir = DefaultLogDir
	}
	if c.SubuidFile == "" {
		c.SubuidFile = DefaultSubuidFile
	}
	if c.SubgidFile == "" {
		c.SubgidFile = DefaultSubgidFile
	}
	if c.Parallel <= 0 {
		c.Parallel = 4
	}
	if c.Resync <= 0 {
		c.Resync = 30 * time.Second
	}
	if c.CgroupDriver == "" {
		c.CgroupDriver = "auto"
	}
	if c.LogDriver == "" {
		c.LogDriver = LogDriverFile
	}
	if c.JournalSocket == "" {
		c.JournalSocket = JournalStdoutSocket
	}
	if c.LogMaxSize <= 0 {
		c.LogMaxSize = DefaultLogMaxSize
	}
	if c.LogKeep <= 0 {
		c.LogKeep = DefaultLogKeep
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ImageRoot == "" {
		c.ImageRoot = image.DefaultRoot
	}
	if c.RegistryConfig == "" {
		c.RegistryConfig = image.DefaultRegistryConfig
	}
	if c.ImageGC == nil {
		p := image.DefaultGCPolicy
		c.ImageGC = &p
	}
	if c.ImageGCEvery <= 0 {
		c.ImageGCEvery = DefaultImageGCEvery
	}
}

// Sentinel errors of Run.
var (
	// ErrUnknownDriver: a cgroup or log driver name that does not exist.
	ErrUnknownDriver = errors.New("unknown driver")
	// ErrLocked: another daemon runs with the same state directory.
	ErrLocked = errors.New("another reconciled daemon is running with this state directory")
	// ErrNotRoot: the daemon must run as root.
	ErrNotRoot = errors.New("reconciled run must run as root")
)

// CheckDriverNames fails on a cgroup or log driver name that does not
// exist (a usage error).
func CheckDriverNames(cgroupDriver, logDriver string) error {
	switch cgroupDriver {
	case "", "auto", "cgroupfs", "systemd":
	default:
		return fmt.Errorf("--cgroup-driver %q: %w; use auto, cgroupfs or systemd", cgroupDriver, ErrUnknownDriver)
	}
	switch logDriver {
	case "", LogDriverFile, LogDriverJournald:
	default:
		return fmt.Errorf("--log-driver %q: %w; use file or journald", logDriver, ErrUnknownDriver)
	}
	return nil
}

// NewCgroupDriver returns the cgroup driver by its flag value: auto picks
// systemd when it is PID 1 and answers on its private socket, cgroupfs
// otherwise; systemd fails (cgroups.ErrSystemdUnavailable) where it does
// not answer. Close a systemd driver (io.Closer) when done.
func NewCgroupDriver(ctx context.Context, name string, log *slog.Logger) (cgroups.Driver, error) {
	opts := []cgroups.SystemdOption{
		cgroups.WithSystemdLogger(log.With("component", "systemd")),
		cgroups.WithDescription(func(id string) string { return "reconciled container " + id }),
	}
	switch name {
	case "auto", "":
		return cgroups.NewAuto(ctx, opts...)
	case "cgroupfs":
		return cgroups.NewCgroupfs()
	case "systemd":
		d, err := cgroups.NewSystemd(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("--cgroup-driver systemd: %w (use auto or cgroupfs where systemd is not PID 1)", err)
		}
		return d, nil
	}
	return nil, CheckDriverNames(name, "")
}

// Info is STATE/daemon.json, written by the running daemon for the
// clients (logs finds the log directory there).
type Info struct {
	Pid       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Manifests string    `json:"manifests"`
	LogDir    string    `json:"logDir"`
	// CgroupDriver is the driver in use: cgroupfs or systemd.
	CgroupDriver string `json:"cgroupDriver,omitempty"`
	// CgroupParent is where this daemon's containers' cgroups go: the
	// directory (cgroupfs) or slice (systemd).
	CgroupParent string `json:"cgroupParent,omitempty"`
	// LogDriver is file or journald.
	LogDriver string `json:"logDriver,omitempty"`
}

// ReadInfo reads STATE/daemon.json.
func ReadInfo(state string) (*Info, error) {
	data, err := os.ReadFile(Layout(state).Info())
	if err != nil {
		return nil, err
	}
	var i Info
	if err := json.Unmarshal(data, &i); err != nil {
		return nil, fmt.Errorf("unable to parse %s: %w", Layout(state).Info(), err)
	}
	return &i, nil
}

// Run runs the daemon until ctx ends, then returns leaving every container
// running. Containers found under STATE/runtime are adopted as they are.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	nofile, err := preflight(&cfg)
	if err != nil {
		return err
	}
	batchThreads(cfg.Logger)
	drv, err := NewCgroupDriver(ctx, cfg.CgroupDriver, cfg.Logger)
	if err != nil {
		return err
	}
	if c, ok := drv.(io.Closer); ok {
		defer c.Close()
	}
	if err := cfg.absPaths(); err != nil {
		return err
	}
	layout := Layout(cfg.State)
	unlock, cgParent, err := claimState(layout, cfg, drv.Name())
	if err != nil {
		return err
	}
	defer unlock()

	log := cfg.Logger
	events := newEventLog()
	if err := events.persistTo(layout.EventsDir(), log); err != nil {
		log.Warn("container events will not survive a restart", "err", err)
	}

	if err := shareRootfsDir(filepath.Join(cfg.State, "rootfs")); err != nil {
		return fmt.Errorf("unable to prepare the image root filesystems' directory: %w", err)
	}
	// Two spare monitors and inits per kind of container (WithSpares): a
	// dropped manifest's container skips starting them, and so does the
	// next one dropped right after it, while the first is replaced
	// (bench/converge.sh: 200 drops back to back, p50 9.5 ms with two,
	// 11-14 ms with one, on a 2-core host).
	rt, err := executor.New(layout.Runtime(), executor.WithCgroups(drv), executor.WithLogger(log), executor.WithSpares(2),
		executor.WithCgroupsPath(func(id string) string { return cgParent.Path(drv.Name(), id) }))
	if err != nil {
		return err
	}
	defer rt.Close()
	store, err := openStore(ctx, layout, cfg.Resync, log)
	if err != nil {
		return err
	}
	defer store.Close()
	// The parts tell the loop and the publisher through these, set below
	// before anything runs.
	var (
		loop *reconciler.Loop
		pub  *publisher
	)
	exits, err := newExitWatcher(layout.Runtime(), log, store.Invalidate, func(name string) {
		loop.Notify(name)
		pub.Kick()
	})
	if err != nil {
		return err
	}
	last := &lastExits{}
	images, err := image.Open(image.Options{Root: cfg.ImageRoot, Insecure: cfg.InsecureRegistries,
		RegistryConfig: cfg.RegistryConfig, Logger: log.With("component", "images"),
		PullConcurrency: cfg.PullConcurrency, PullRate: cfg.PullRate})
	if err != nil {
		return fmt.Errorf("unable to open the image store: %w", err)
	}
	userns, err := openUsernsAlloc(layout, cfg.SubuidFile, cfg.SubgidFile)
	if err != nil {
		return err
	}
	adapter := &runtimeAdapter{hidden: cfg.daemonDirs(), userns: userns,
		rt: rt, cg: drv, layout: layout, logDir: cfg.LogDir, logDriver: cfg.LogDriver, journal: cfg.JournalSocket,
		store: store, exits: exits, log: log, onExit: last.set, cgParent: cgParent, events: events, images: images,
		oci: ociruntime.NewRuntimes(cfg.Runtimes, layout.Runtime(), layout.OCI(), drv, log)}
	resolver := newImageResolver(ctx, images, layout, cfg.ImageImportDir, log.With("component", "images"), func(name string) { loop.Notify(name) })
	notify := newNotifier(log, cfg.TestBlockLoopAfter)
	if notify.watchdog > 0 {
		log.Info("systemd watchdog on", "watchdogSec", notify.watchdog)
	}
	// spec.health's probes (health.go): a change of health has the
	// container, and those that wait for it, planned again. http and tcp
	// probes run on the network prober's thread (netprobe.go), closed
	// after the manager's runs.
	netProbes, err := newNetProber()
	if err != nil {
		return fmt.Errorf("unable to start the http and tcp prober: %w", err)
	}
	defer netProbes.Close()
	health := newHealthManager(ctx, log.With("component", "health"), events, probeWith(rt), netProbes, layout.Notify(), func(name string) {
		loop.Notify(name)
		pub.Kick()
	})
	defer health.Close()
	loop = reconciler.New(reconciler.Config{
		Images:         resolver,
		Heartbeat:      notify.Heartbeat,
		HeartbeatEvery: notify.heartbeatEvery(),
		Executor:       notifyingExecutor{Executor: cleaningExecutor{adapter}, health: health, observe: store.ObserveOne},
		Observer:       &watchingObserver{store: store, exits: exits, health: health},
		Recorder:       store,
		Planner:        reconciler.Planner{ChangedFields: desired.ChangedFields},
		Logger:         log,
		Workers:        cfg.Parallel,
		Resync:         cfg.Resync,
		OnStatus:       func() { pub.Kick() },
		OnEvent:        events.fromLoop,
	})
	gc := newImageGC(images, *cfg.ImageGC, cfg.ImageGCEvery, func() (image.InUse, error) {
		return imagesInUse(pub.desiredSet(), loop.Status(), store.Records())
	}, log.With("component", "image-gc"))
	// An import stores references: watchRefs below then has every
	// container looked at again, those waiting for the image included.
	var imports *importDir
	var importReport func() []ImportReport
	if cfg.ImageImportDir != "" {
		imports = newImportDir(cfg.ImageImportDir, layout.Imports(), images, !cfg.InsecureManifests && os.Geteuid() == 0,
			cfg.Resync, log.With("component", "imports"), func() { pub.Kick() })
		importReport = imports.Report
	}
	pub = newPublisher(publisherConfig{loop: loop, events: events, exits: last, layout: layout, manifests: cfg.Manifests, log: log,
		cgroupDriver: drv.Name(), cgroupParent: cgParent.Of(drv.Name()), logDriver: cfg.LogDriver, onStatus: notify.SetStatus,
		health: health, imageDisk: gc.Disk, imports: importReport,
		refresh: func(name string) {
			store.Invalidate(name)
			loop.Notify(name)
		}})
	notify.summary = pub.Summary
	events.changed = pub.Kick

	feed := &manifestFeed{dir: cfg.Manifests, insecure: cfg.InsecureManifests, resync: 10 * cfg.Resync, reload: cfg.Reload,
		store: store, notify: notify, health: health, pub: pub, loop: loop, log: log}
	err = feed.start(ctx, Seed(store.Records()))
	defer feed.stop() // the watcher run has at the end
	if err != nil {
		return err
	}
	l, err := listenSocket(layout.Socket())
	if err != nil {
		return err
	}
	defer os.Remove(layout.Socket())

	log.Info("reconciled started", "manifests", cfg.Manifests, "state", cfg.State, "logDir", cfg.LogDir, "openFiles", nofile.Cur,
		"parallel", cfg.Parallel, "resync", cfg.Resync, "cgroupDriver", drv.Name(), "cgroupParent", cgParent.Of(drv.Name()))
	var wg sync.WaitGroup
	wg.Go(exits.Run)
	wg.Go(func() { feed.run(ctx) })
	wg.Go(func() { pub.Run(ctx) })
	wg.Go(func() {
		watchRefs(ctx, images.Digests, images.RefsPath(), log.With("component", "images"), func() {
			log.Info("image references changed: looking at every container again")
			loop.Rescan()
			gc.Kick() // a pull stored something
		})
	})
	wg.Go(func() { gc.Run(ctx) })
	if imports != nil {
		wg.Go(func() { imports.Run(ctx) })
	}
	wg.Go(func() {
		if err := pub.serve(ctx, l); err != nil {
			log.Error("status server stopped", "err", err)
		}
	})
	rot := &rotator{dir: cfg.LogDir, maxSize: cfg.LogMaxSize, keep: cfg.LogKeep, log: log}
	wg.Go(func() { rot.Run(ctx) })

	err = loop.Run(ctx)
	health.Close()
	notify.Stopping()
	exits.Close()
	wg.Wait()
	log.Info("reconciled stopped; containers keep running")
	return err
}

// preflight checks what Run can check before it touches anything (root,
// the driver names, the GC policy, journald's socket) and raises the open
// files limit, warning when it stays low.
func preflight(cfg *Config) (unix.Rlimit, error) {
	if os.Geteuid() != 0 {
		return unix.Rlimit{}, ErrNotRoot
	}
	if err := CheckDriverNames(cfg.CgroupDriver, cfg.LogDriver); err != nil {
		return unix.Rlimit{}, err
	}
	if err := cfg.ImageGC.Check(); err != nil {
		return unix.Rlimit{}, err
	}
	nofile, err := raiseNofile()
	if err != nil {
		cfg.Logger.Warn("unable to raise the open files limit", "err", err)
	} else if nofile.Cur < minNofile {
		cfg.Logger.Warn("the open files limit is low: containers beyond it cannot be observed, and are left alone until they can",
			"soft", nofile.Cur, "hard", nofile.Max)
	}
	if cfg.LogDriver == LogDriverJournald {
		if err := checkJournal(cfg.JournalSocket); err != nil {
			return nofile, err
		}
	}
	return nofile, nil
}

// absPaths makes the configured directories absolute.
func (c *Config) absPaths() error {
	var err error
	for _, p := range []*string{&c.Manifests, &c.State, &c.LogDir, &c.ImageRoot, &c.SubuidFile, &c.SubgidFile} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	if c.ImageImportDir != "" {
		if c.ImageImportDir, err = filepath.Abs(c.ImageImportDir); err != nil {
			return err
		}
	}
	return nil
}

// claimState creates the state directory, takes its lock (held until
// unlock), settles this daemon's cgroup parent, writes STATE/daemon.json
// for the clients and creates the log directory.
func claimState(layout Layout, cfg Config, driver string) (unlock func(), cgParent cgroupParent, err error) {
	if err := os.MkdirAll(cfg.State, 0o711); err != nil {
		return nil, cgroupParent{}, fmt.Errorf("unable to create the state directory: %w", err)
	}
	unlock, err = lock(layout)
	if err != nil {
		return nil, cgroupParent{}, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	cgParent, err = loadCgroupParent(layout, cfg.CgroupParent, cfg.Logger)
	if err != nil {
		return nil, cgroupParent{}, err
	}
	info := Info{Pid: os.Getpid(), Started: time.Now().UTC(), Manifests: cfg.Manifests, LogDir: cfg.LogDir,
		CgroupDriver: driver, CgroupParent: cgParent.Of(driver), LogDriver: cfg.LogDriver}
	if data, err := json.MarshalIndent(info, "", "  "); err != nil {
		return nil, cgroupParent{}, err
	} else if err := atomicfile.Write(cfg.State, filepath.Base(layout.Info()), append(data, '\n'), 0o644, atomicfile.SyncDir); err != nil {
		return nil, cgroupParent{}, fmt.Errorf("unable to write %s: %w", layout.Info(), err)
	}
	if err := os.MkdirAll(cfg.LogDir, 0o750); err != nil {
		return nil, cgroupParent{}, fmt.Errorf("unable to create the log directory: %w", err)
	}
	return unlock, cgParent, nil
}

// daemonDirs are the daemon's own directories (state, logs, images, the
// import directory): masked in every container whose root is the host's.
func (c *Config) daemonDirs() []string {
	dirs := []string{c.State, c.LogDir, c.ImageRoot}
	if c.ImageImportDir != "" {
		dirs = append(dirs, c.ImageImportDir)
	}
	return dirs
}

// openStore opens the observer's store of records (one that holds
// unreadable records is used, with a warning: those containers are
// recreated), and forgets the records, and removes the leftovers, of
// containers that no longer exist. resync is the loop's: observations
// are cached for four of them.
func openStore(ctx context.Context, layout Layout, resync time.Duration, log *slog.Logger) (*actual.Store, error) {
	store, err := actual.OpenStore(layout.Runtime(), layout.Records(), actual.StoreOptions{CacheTTL: 4 * resync, Logger: log})
	if err != nil {
		if store == nil {
			return nil, err
		}
		log.Warn("some container records are unreadable; those containers will be recreated", "err", err)
	}
	if err := pruneRecords(ctx, store, layout); err != nil {
		log.Warn("unable to remove stale records", "err", err)
	}
	recs := store.Records()
	if _, err := pruneLeftovers(ctx, layout, func(n string) bool { _, ok := recs[n]; return ok }, log); err != nil {
		log.Warn("unable to remove some leftovers of containers that no longer exist", "err", err)
	}
	return store, nil
}

// minNofile is the open files limit under which the daemon warns: it holds
// two pidfds per running container, and reads files for each.
const minNofile = 4096

// raiseNofile raises the daemon's soft RLIMIT_NOFILE to its hard limit
// and returns the limit. (The Go runtime raises it to hard-1 at start,
// which is as good, and gives the processes it starts, containers
// included, the soft limit it found; a raise here, needed only when
// something lowered it since, stops that.)
func raiseNofile() (unix.Rlimit, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return lim, os.NewSyscallError("getrlimit", err)
	}
	if lim.Cur+1 >= lim.Max {
		return lim, nil
	}
	want := lim
	want.Cur = want.Max
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		return lim, os.NewSyscallError("setrlimit", err)
	}
	return want, nil
}

// lockWait is how long a starting daemon waits for the lock.
const lockWait = 3 * time.Second

// lock takes STATE/reconciled.lock, held until unlock or exit.
func lock(layout Layout) (func(), error) {
	f, err := os.OpenFile(layout.Lock(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("unable to open %s: %w", layout.Lock(), err)
	}
	// A daemon killed with SIGKILL may leave, for a moment, a child that
	// has not exec'd yet and still shares the lock: wait a little.
	for deadline := time.Now().Add(lockWait); ; {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			if i, err := ReadInfo(string(layout)); err == nil {
				return nil, fmt.Errorf("%w (pid %d, %s)", ErrLocked, i.Pid, layout)
			}
			return nil, fmt.Errorf("%w (%s)", ErrLocked, layout)
		}
		return nil, fmt.Errorf("unable to lock %s: %w", layout.Lock(), os.NewSyscallError("flock", err))
	}
	return func() { f.Close() }, nil
}

// pruneRecords forgets records without a container: the daemon died
// between writing one and creating its container, or after deleting a
// container it was about to recreate. Nothing runs from them.
func pruneRecords(ctx context.Context, store *actual.Store, layout Layout) error {
	var errs []error
	for name := range store.Records() {
		if _, err := os.Stat(executor.StateDir(layout.Runtime(), name)); errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, store.Forget(ctx, name))
		}
	}
	return errors.Join(errs...)
}

// Seed rebuilds, from the records, the desired set the containers were
// created from: the watcher starts from it, so that a manifest that is
// invalid when the daemon starts keeps its container ("kept: web.yaml is
// invalid") instead of deleting it.
func Seed(records map[string]actual.Record) desired.Set {
	s := desired.Set{Containers: map[string]*desired.Container{}, Files: map[string]*desired.FileStatus{}}
	for name, r := range records {
		if r.Applied == nil || r.Applied.Source == "" || r.Applied.Name != name {
			continue
		}
		s.Containers[name] = r.Applied
		f := s.Files[r.Applied.Source]
		if f == nil {
			f = &desired.FileStatus{Path: r.Applied.Source}
			s.Files[r.Applied.Source] = f
		}
		f.Containers = append(f.Containers, name)
	}
	for _, f := range s.Files {
		slices.Sort(f.Containers)
	}
	return s
}

// watchingObserver observes through the store and makes sure every live
// container's init is watched for its exit, and every running container
// with a probe is probed (its health filled in).
type watchingObserver struct {
	store  *actual.Store
	exits  *exitWatcher
	health *healthManager
}

// Invalidate makes the next Observe read container name afresh (the loop
// does so before it acts on a container).
func (o *watchingObserver) Invalidate(name string) { o.store.Invalidate(name) }

func (o *watchingObserver) ObserveOne(ctx context.Context, name string) (*actual.Container, error) {
	c, err := o.store.ObserveOne(ctx, name)
	if c != nil && c.Live() {
		o.exits.Watch(name, c.Pid, c.PidStartTime)
	}
	if err == nil {
		o.health.Observed(name, c)
	}
	return c, err
}

func (o *watchingObserver) Observe(ctx context.Context) (actual.Set, error) {
	set, err := o.store.Observe(ctx)
	if err != nil {
		return nil, err
	}
	names := make(map[string]bool, len(set))
	for name, c := range set {
		if c.Live() {
			o.exits.Watch(name, c.Pid, c.PidStartTime)
		}
		o.health.Observed(name, c)
		names[name] = true
	}
	o.health.Gone(names)
	return set, nil
}

// batchThreads makes the daemon's threads SCHED_BATCH (sys.Batch) where
// it was started SCHED_OTHER: its goroutines hand work to one another
// across threads all the time, and each wake-up that preempted the thread
// on the CPU cost a switch (bench/converge.sh -base, 2 CPUs, drops back
// to back: p50 8.9 -> 8.2 ms, lower in 9 of 10 pairs; CPU per drop 15.6
// -> 14.8 ms). Containers, the commands run in them and hooks run as the
// daemon was started.
func batchThreads(log *slog.Logger) {
	switched, err := sys.Batch()
	if err != nil {
		log.Warn("could not make every thread of the daemon SCHED_BATCH", "err", err)
	}
	if switched {
		log.Debug("the daemon's threads are SCHED_BATCH; what it starts for containers runs as it was started (SCHED_OTHER)")
	}
}
