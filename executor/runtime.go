package executor

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
	"strconv"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/seccomp"
	"reconciled.dev/reconciled/internal/sys"
)

// Runtime creates and manages containers whose state lives under one root
// directory. It is safe for concurrent use on different containers;
// operations on one container must not race (the caller serializes them,
// as the reconciler's work queue does).
type Runtime struct {
	root string
	log  *slog.Logger

	// cgroups is the driver, detected on first use unless WithCgroups
	// gave one (the CLI's state and kill never need it).
	cgroupsOnce sync.Once
	cgroups     cgroups.Driver
	cgroupsErr  error
	// reap: this process stays alive (the daemon), so it must reap the
	// monitors it starts.
	reap bool

	exeOnce sync.Once
	exe     *os.File
	exeErr  error

	// Sealed memfds of the programs launch and the runner init exec,
	// made once per Runtime on high descriptors.
	reaper sealedProgram // the machine monitor (reaperExe)
	runner sealedProgram // the runner init (runnerExe)
	initFd sealedProgram // the init of init: true, for the runner init (initExe)
	// spawners: the spawner that forks machine monitors
	// (spawner.go); noSpawner: this process starts them itself
	// (BenchmarkLaunchSpare compares).
	spawners  spawners
	noSpawner bool

	// goInit makes every container's init the Go one (GoInitEnv):
	// see useRunner.
	goInit bool

	spares *spares // nil without WithSpares

	// tmpl is the mount namespace template (template.go), made once, for
	// a Runtime with spares.
	tmpl mntTemplate

	// goMonitor keeps every monitor a Go process for the container's
	// life (no reaper): the fallback where there is no reaper, tested here.
	goMonitor bool

	// cgroupsPath is the linux.cgroupsPath of a container whose spec
	// names none (nil: the driver's default); see WithCgroupsPath.
	cgroupsPath func(id string) string

	filters filterCache // compiled seccomp filters (seccomp.go)
}

// WithCgroupsPath sets where the cgroup of a container whose spec names
// no linux.cgroupsPath goes (a daemon's own parent), and where Delete
// looks for what runs for a container whose state is unreadable.
func WithCgroupsPath(f func(id string) string) Option {
	return func(r *Runtime) { r.cgroupsPath = f }
}

// defaultCgroupsPath is the cgroupsPath of id when its spec names none
// ("" is the driver's default).
func (r *Runtime) defaultCgroupsPath(id string) string {
	if r.cgroupsPath == nil {
		return ""
	}
	return r.cgroupsPath(id)
}

// Option configures a Runtime.
type Option func(*Runtime)

// WithCgroups sets the cgroup driver. nil disables cgroups (tests only:
// the spec's resources are then ignored).
func WithCgroups(d cgroups.Driver) Option {
	return func(r *Runtime) {
		r.cgroups = d
		r.cgroupsOnce.Do(func() {})
	}
}

// WithLogger sets where warnings (failed poststart/poststop hooks, cleanup
// trouble) go.
func WithLogger(l *slog.Logger) Option { return func(r *Runtime) { r.log = l } }

// WithReaper makes the Runtime reap the monitor processes it starts. A
// long-lived caller (the daemon) needs it; a CLI that exits does not.
func WithReaper() Option { return func(r *Runtime) { r.reap = true } }

// defaultCgroups returns the driver used when no WithCgroups option is given.
var defaultCgroups = cgroups.NewCgroupfs

// New returns a Runtime keeping state under root (created if missing).
func New(root string, opts ...Option) (*Runtime, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	r := &Runtime{root: abs, log: slog.New(slog.DiscardHandler), goInit: os.Getenv(GoInitEnv) == "1"}
	for _, o := range opts {
		o(r)
	}
	if err := os.MkdirAll(abs, 0o711); err != nil {
		return nil, fmt.Errorf("unable to create state root: %w", err)
	}
	return r, nil
}

// cgroupDriver returns the cgroup driver, nil if cgroups are disabled.
func (r *Runtime) cgroupDriver() (cgroups.Driver, error) {
	r.cgroupsOnce.Do(func() {
		r.cgroups, r.cgroupsErr = defaultCgroups()
		if r.cgroupsErr != nil {
			r.cgroupsErr = fmt.Errorf("cgroups: %w", r.cgroupsErr)
		}
	})
	return r.cgroups, r.cgroupsErr
}

// Root is the directory that holds the containers' state.
func (r *Runtime) Root() string { return r.root }

// CreateOptions are the caller's side of a new container.
type CreateOptions struct {
	// Spec is the container's spec; nil reads bundle/config.json.
	Spec *specs.Spec
	// Stdin, Stdout and Stderr become the container's fds 0-2; nil means
	// /dev/null.
	Stdin, Stdout, Stderr *os.File
	// PidFile, if set, receives the init's PID (written atomically).
	PidFile string
	// ExtraFiles become the process's fds 3, 4, ... (runc's
	// --preserve-fds): open across the init's exec, close-on-exec clear.
	// At most MaxExtraFiles. A create with them never uses a spare init.
	ExtraFiles []*os.File
	// CallerReaps leaves the container's init to the caller's side to
	// reap, as runc does: once the container is created its monitor
	// exits, and the init is reparented to the nearest child subreaper
	// among the caller's ancestors (an engine's conmon or shim, which
	// waits for the PID in PidFile) or to PID 1. No exit status is then
	// recorded: State says stopped, without one, once the init is gone.
	CallerReaps bool
	// Console, when set, gives the process a terminal as runc does for
	// process.terminal: the init opens a pseudo-terminal on the
	// container's devpts (its /dev/pts/ptmx, once the root is set up),
	// the slave becomes its controlling terminal and fds 0-2 (Stdin,
	// Stdout and Stderr are then unused), owned by the process's user,
	// with ONLCR cleared; the master is handed to Console during Create
	// (the caller owns it). An error from Console fails the create.
	Console func(master *os.File) error
}

// MaxExtraFiles is how many ExtraFiles a create or an exec may pass: the
// kernel's limit on descriptors in one message (SCM_MAX_FD, 253) less the
// three of stdio.
const MaxExtraFiles = 250

// Create sets up container id from bundle and leaves its process waiting
// for Start. On any failure everything made so far is removed.
func (r *Runtime) Create(ctx context.Context, id, bundle string, o CreateOptions) error {
	return r.createRetrying(ctx, id, bundle, o, nil)
}

// CreateAndStart creates container id as Create does, then starts it as
// Start does, and returns the state it recorded (as StartState). created
// reports whether the create succeeded: an error then is the start's,
// which removed the container (as Start does when the exec fails).
//
// It is for a caller that starts every container it creates at once (the
// daemon): the start goes on from what the create knows, without reading
// the state back or checking for a start that an earlier caller began
// (RecoverStart), so the init, waiting on the exec fifo from the moment
// it is set up, is released a few hundred microseconds sooner.
func (r *Runtime) CreateAndStart(ctx context.Context, id, bundle string, o CreateOptions) (st *State, created bool, err error) {
	defer r.refillAfterStart() // the spares the create took (refillLater)
	run := &running{fifo: -1, pidfd: -1}
	defer run.close()
	if err := r.createRetrying(ctx, id, bundle, o, run); err != nil {
		return nil, false, err
	}
	if run.pidfd < 0 {
		// The init waits for the start: it cannot have exited yet
		// unless killed.
		pidfd, err := openPidfd(run.st.Pid, run.st.PidStartTime)
		if err != nil {
			return nil, true, fmt.Errorf("start container %s: %w", id, ErrNotRunning)
		}
		run.pidfd = pidfd
	}
	fifo := run.fifo
	run.fifo = -1 // startCreated closes it
	if fifo >= 0 {
		// Released by the create: the wait for its exec is not cut
		// short by ctx either (see detach in create).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), releasedTimeout)
		defer cancel()
	}
	if err := r.startCreated(ctx, id, &run.st, run.pidfd, fifo, run.started); err != nil {
		return nil, true, err
	}
	return &run.st, true, nil
}

// releasedTimeout bounds what CreateAndStart waits for once the create
// released the init (which a cancelled context no longer cuts short): the
// init's report of its last chunk and its exec, a millisecond or two.
const releasedTimeout = 10 * time.Second

// running is what a create that a start follows at once (CreateAndStart)
// hands the start: the state it recorded and, where the init was a
// runner init, the exec fifo it opened for reading (the init then goes
// on to its exec without waiting) and when, and the init's pidfd, opened
// before that: a process that exits at once may be gone (and reaped by
// its monitor) before the create returns.
type running struct {
	st      State
	fifo    int // -1: not opened
	pidfd   int // -1: not opened
	started time.Time
}

// close closes what run holds.
func (run *running) close() {
	if run.fifo >= 0 {
		unix.Close(run.fifo)
		run.fifo = -1
	}
	if run.pidfd >= 0 {
		unix.Close(run.pidfd)
		run.pidfd = -1
	}
}

// createRetrying is Create; with run, for CreateAndStart.
func (r *Runtime) createRetrying(ctx context.Context, id, bundle string, o CreateOptions, run *running) error {
	var usedSpare bool
	err := r.create(ctx, id, bundle, o, true, &usedSpare, run)
	if err != nil && usedSpare && spareGone(err) {
		// The spare's init died between the check that took it and
		// its use (killed, OOM-killed): the create made nothing that
		// stays, so it is done again with a pair of its own.
		r.log.Debug("a spare container init died before it was used; creating with a new one", "container", id, "err", err)
		err = r.create(ctx, id, bundle, o, false, &usedSpare, run)
	}
	return err
}

// spareGone says whether a create failed because its init was gone: a
// write to it found no reader, its move into the cgroup no process, or
// its socket closed without the error an init sends when it fails.
func spareGone(err error) bool {
	return errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ESRCH) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// create is one try of Create; with run, the container is recorded
// created for CreateAndStart and, with a runner init, released as soon as
// it is set up (run says how).
func (r *Runtime) create(ctx context.Context, id, bundle string, o CreateOptions, allowSpare bool, usedSpare *bool, run *running) (err error) {
	if err := ValidateID(id); err != nil {
		return err
	}
	if len(o.ExtraFiles) > MaxExtraFiles {
		return fmt.Errorf("create container %s: %d extra files, at most %d can be passed", id, len(o.ExtraFiles), MaxExtraFiles)
	}
	bundle, err = filepath.Abs(bundle)
	if err != nil {
		return err
	}
	spec := o.Spec
	if spec == nil {
		if spec, err = LoadSpec(bundle); err != nil {
			return err
		}
	}
	plan, err := validateSpec(spec)
	if err != nil {
		return fmt.Errorf("invalid spec for container %s: %w", id, err)
	}
	var filter *seccomp.Program
	if spec.Linux != nil {
		if filter, err = r.seccompFilter(spec.Linux.Seccomp); err != nil {
			return fmt.Errorf("invalid spec for container %s: %w", id, err)
		}
	}
	if !plan.has(unix.CLONE_NEWNS) && !joins(plan, unix.CLONE_NEWNS) {
		return fmt.Errorf("container %s: a mount namespace is required", id)
	}
	dir := StateDir(r.root, id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("container %s: %w", id, ErrExist)
		}
		return fmt.Errorf("unable to create state directory: %w", err)
	}
	c := &creation{r: r, id: id, dir: dir, spec: spec}
	defer func() {
		if err != nil {
			if run != nil {
				run.close()
			}
			if cerr := c.teardown(); cerr != nil {
				r.log.Warn("cleanup after failed create", "container", id, "err", cerr)
			}
			err = fmt.Errorf("create container %s: %w", id, err)
		}
	}()
	runner := r.useRunner(spec, plan, o)
	tmpl := runner && r.fromTemplate(spec, bundle)
	// The container's pair: a spare's, started already, or one launched
	// now, beside the fifo, the first state and the cgroup (ForkExec
	// returns once the monitor has exec'd: 1.3-2.2 ms of a create on a
	// 2-core VM). A spare's init may hold descriptors where the extra
	// files go (3, 4, ...), which a fresh one reserves first; nor has one
	// the user namespace of this container.
	var p *pair
	defer func() {
		if p != nil {
			p.close()
		}
	}()
	var spare *pair
	if allowSpare && len(o.ExtraFiles) == 0 && o.Console == nil && !plan.has(unix.CLONE_NEWUSER) {
		if spare = r.takeSpare(plan, runner, tmpl); spare == nil {
			spare = r.awaitSpare(ctx, plan, runner, tmpl)
		}
	}
	var launching <-chan launchResult
	into := false // the launched monitor clones the init into its cgroup2 directory
	if spare == nil {
		into = r.clonesIntoCgroup()
		launching = r.launchAsync(plan, into, runner, tmpl)
	}
	// A pair the create failed before it used is killed (and a spare's
	// cgroup removed) before the teardown.
	defer func() {
		if launching != nil {
			if res := <-launching; res.err == nil {
				res.p.kill()
			}
		}
		if spare != nil && p != spare {
			r.discard(spare)
		}
	}()
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	c.st = State{
		OCIVersion: specs.Version, ID: id, Status: StatusCreating, Bundle: bundle,
		Annotations: spec.Annotations, Rootfs: rootfs, Created: time.Now().UTC(),
	}
	if h := spec.Hooks; h != nil && (len(h.Poststart) > 0 || len(h.Poststop) > 0) {
		c.st.Hooks = &specs.Hooks{Poststart: h.Poststart, Poststop: h.Poststop}
	}
	fifo := filepath.Join(dir, fifoFile)
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return os.NewSyscallError("mkfifo", err)
	}
	if uid, gid := hostOwner(spec, plan); uid != 0 || gid != 0 {
		if err := os.Chown(fifo, uid, gid); err != nil {
			return err
		}
	}
	if runner {
		// No process of this container runs this binary (the monitor
		// and the init are sealed memfds): its read-only copy (selfExe,
		// a mount and a lazy unmount) is not made for it.
		var fi unix.Stat_t
		if err := unix.Stat("/proc/self/exe", &fi); err == nil {
			c.st.RuntimeExeDev, c.st.RuntimeExeIno = fi.Dev, fi.Ino
		}
	} else if exe, err := r.selfExe(); err == nil {
		var fi unix.Stat_t
		if err := unix.Fstat(int(exe.Fd()), &fi); err == nil {
			c.st.RuntimeExeDev, c.st.RuntimeExeIno = fi.Dev, fi.Ino
		}
	}
	// use makes q the container's pair: its monitor, and its init when
	// it is a spare's (started already). From then on a cancelled ctx
	// ends every wait on the pair's sync socket, until detach.
	var unwatch func() bool
	defer func() {
		if unwatch != nil {
			unwatch()
		}
	}()
	var watchMu sync.Mutex
	detached := false
	use := func(q *pair) {
		p = q
		c.monitor = p.monPid
		c.st.MonitorPid, c.st.MonitorStartTime = p.monPid, p.monStart
		c.st.Pid, c.st.PidStartTime = p.pid, p.pidStart
		unwatch = context.AfterFunc(ctx, func() {
			watchMu.Lock()
			defer watchMu.Unlock()
			if !detached {
				q.sock.SetDeadline(time.Now())
			}
		})
	}
	// detach ends the waits on the sync socket after releasedTimeout
	// rather than with ctx: the init was let go to its exec (run), and
	// the container runs whatever the caller does; a teardown for a
	// cancelled ctx (a daemon that stops) would kill it.
	detach := func() {
		watchMu.Lock()
		defer watchMu.Unlock()
		detached = true
		p.sock.SetDeadline(time.Now().Add(releasedTimeout))
	}
	// With a terminal the init sends its master on a socket of its own
	// (the sync socket is read through a buffer, which would drop it).
	var consoleInit, consoleMine *os.File
	if o.Console != nil {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socketpair", err)
		}
		consoleMine, consoleInit = os.NewFile(uintptr(fds[0]), "console"), os.NewFile(uintptr(fds[1]), "console-init")
		defer consoleMine.Close()
		defer func() {
			if consoleInit != nil {
				consoleInit.Close()
			}
		}()
	}
	// release hands the init its stdio and configuration and, without
	// prestart and createRuntime hooks, "go" (early): the init then sets up
	// while its cgroup is finished and it is moved in (the first move into
	// a cgroup after a while waits for an RCU grace period: milliseconds);
	// it waits for "placed" before anything that depends on its cgroup.
	// With a user namespace: the state directory, the rootfs and the bind
	// mounts, made by this process (userns.go) once the init exists.
	var outside []*os.File
	var layout *preparedLayout
	defer func() {
		for _, f := range outside {
			f.Close()
		}
	}()
	early := spec.Hooks == nil || (len(spec.Hooks.Prestart) == 0 && len(spec.Hooks.CreateRuntime) == 0) //nolint:staticcheck // Prestart: deprecated, still supported
	release := func() error {
		// The init was forked from a thread of this process or of the
		// spawner: in a daemon whose threads are batch (sys.Batch), it
		// gets back what the daemon was started with before it runs
		// anything of the container's.
		if err := sys.ResetStarted(p.pid); err != nil {
			return fmt.Errorf("container init %d: %w", p.pid, err)
		}
		var null *os.File
		stdio := func(f *os.File) *os.File {
			if f != nil {
				return f
			}
			if null == nil {
				null, _ = os.OpenFile(os.DevNull, os.O_RDWR, 0)
			}
			return null
		}
		if p.runner {
			var err error
			p.setup, err = c.runnerStart(p, plan, bundle, [3]*os.File{stdio(o.Stdin), stdio(o.Stdout), stdio(o.Stderr)})
			if null != nil {
				null.Close()
			}
			if err != nil {
				return err
			}
			r.log.Debug("child process in init(): the runner init has its stdio and the container is set up from outside", "container", id, "init", p.pid)
			return nil
		}
		extra := o.ExtraFiles
		if consoleInit != nil {
			extra = append(append([]*os.File{}, extra...), consoleInit)
		}
		err := p.sendStdio(stdio(o.Stdin), stdio(o.Stdout), stdio(o.Stderr), extra, outside)
		if consoleInit != nil {
			consoleInit.Close() // the init has it
			consoleInit = nil
		}
		if null != nil {
			null.Close()
		}
		if err != nil {
			return err
		}
		if err := p.enc.Encode(initConfig{ID: id, Bundle: bundle, StateDir: dir, HostPid: p.pid, NS: plan, Spec: withoutSeccomp(spec), Seccomp: filter, Prepared: layout, Console: o.Console != nil}); err != nil {
			return fmt.Errorf("send init config: %w", err)
		}
		r.log.Debug("child process in init(): the init has its config and sets the container up", "container", id, "init", p.pid)
		if early {
			if err := p.enc.Encode(message{Ready: true}); err != nil { // go
				return fmt.Errorf("release container init: %w", err)
			}
		}
		return nil
	}
	// A spare's init is there already: it is released first, so that it
	// sets up while the state is written and the cgroup made. What it does
	// before "placed" stays in its own namespaces, and if this process
	// dies its monitor kills it (the lifeline).
	released := false
	// The debug messages name the steps in runc's words (nsexec, init),
	// which runc's tests and its users grep for; each says what this
	// process saw happen.
	if spare != nil {
		*usedSpare = true
		c.spareCgroup = spare.cg
		r.log.Debug("nsexec container setup: a spare init, already in its new namespaces, is used", "container", id, "init", spare.pid)
		use(spare)
		if err := release(); err != nil {
			return err
		}
		released = true
	}
	if err := c.cgroupManager(ctx); err != nil {
		if p == nil {
			return err
		}
		return p.initFailed(early && released, err)
	}
	// A first state, before anything outside the state directory is made:
	// if this process dies now, delete --force finds the cgroup from it,
	// and a spare's monitor. A monitor launched for this create may not be
	// in it yet: that one exits when this process does, and kills its
	// init if it has one (see the lifeline).
	if err := writeJSONAtomic(dir, stateFile, &c.st); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	// The cgroup is made and its limits set while the monitor and the init
	// start (or set up); only moving the init in waits for its PID. A
	// monitor that clones the init into the cgroup (IntoCgroup) waits
	// for it instead, and a spare's cgroup is renamed (Adopt). On the
	// hybrid layout the cgroup2 directory holds no limits: made first,
	// it takes the init at once, which starts while the v1 cgroups are
	// made (cgroups.EarlyCloneTarget).
	intoEarly := false
	if t, ok := c.cgroup.(cgroups.EarlyCloneTarget); ok && !released && into && c.st.CgroupDriver == "cgroupfs" {
		if intoEarly, err = t.MakeUnified(); err != nil {
			return fmt.Errorf("unable to apply cgroup: %w", err)
		}
	}
	preparing := c.prepareCgroup(ctx)
	prepared := sync.OnceValue(func() error { return <-preparing })

	if !released {
		res := <-launching
		launching = nil
		if res.err != nil {
			return errors.Join(res.err, prepared())
		}
		r.log.Debug("nsexec container setup: the init is started in its new namespaces", "container", id)
		use(res.p)
		if p.cfg.IntoCgroup {
			// The monitor clones the init into the cgroup once it is
			// made: it waits for its configuration until then.
			if !intoEarly {
				if err := prepared(); err != nil {
					return err
				}
			}
			if err := c.configureInto(p); err != nil {
				return errors.Join(err, prepared())
			}
		}
		if err := p.awaitInit(ctx); err != nil {
			return errors.Join(err, prepared())
		}
		c.clonedIn = p.inCgroup
		if p.inCgroup {
			r.log.Debug("the init was cloned into its cgroup2 directory (CLONE_INTO_CGROUP)", "container", id, "init", p.pid)
		}
		c.st.Pid, c.st.PidStartTime = p.pid, p.pidStart
		if plan.has(unix.CLONE_NEWUSER) {
			files, binds, err := r.prepareOutside(p.pid, p.pidStart, spec, bundle, dir)
			if err != nil {
				return errors.Join(err, prepared())
			}
			outside, layout = files, &preparedLayout{Binds: binds}
		}
		if err := release(); err != nil {
			return errors.Join(err, prepared())
		}
	}
	if err := prepared(); err != nil {
		return p.initFailed(early, err)
	}
	// The init's PID, once known. A spare's was in the first state
	// already, and nothing in it has changed since: not written again.
	if spare == nil {
		if err := writeJSONAtomic(dir, stateFile, &c.st); err != nil {
			return fmt.Errorf("write state: %w", err)
		}
	}
	if err := c.applyCgroup(ctx); err != nil {
		return p.initFailed(early, err)
	}
	if adj := spec.Process.OOMScoreAdj; adj != nil {
		if err := os.WriteFile("/proc/"+strconv.Itoa(p.pid)+"/oom_score_adj", []byte(strconv.Itoa(*adj)), 0); err != nil {
			return p.initFailed(early, fmt.Errorf("set oom_score_adj: %w", err))
		}
	}
	if err := setProcessSched(p.pid, spec.Process); err != nil {
		return p.initFailed(early, err)
	}
	if h := spec.Hooks; h != nil {
		state := c.hookState(StatusCreating)
		if err := runHooks(ctx, "prestart", h.Prestart, state); err != nil { //nolint:staticcheck // deprecated, still supported
			return err
		}
		if err := runHooks(ctx, "createRuntime", h.CreateRuntime, state); err != nil {
			return err
		}
	}
	// recorded: the container was recorded created (and its monitor
	// told) before the runner init ran its last chunk.
	recorded := false
	if p.runner {
		var sent func() error
		if run != nil {
			// The init is recorded created, and the exec fifo opened, while
			// it runs its last chunk: it goes on to the exec without
			// waiting for the start. Its monitor knows the container
			// before the init can exit, as after Create; a last chunk
			// that fails is the create's error, and the teardown waits
			// for that monitor before it removes the state directory.
			sent = func() error {
				if err := c.recordCreated(p, o); err != nil {
					return err
				}
				recorded = true
				// Before the fifo's open releases the init.
				pidfd, err := openPidfd(c.st.Pid, c.st.PidStartTime)
				if err != nil {
					return fmt.Errorf("container init %d: %w", c.st.Pid, err)
				}
				run.pidfd = pidfd
				run.started = time.Now().UTC()
				fifo, err := unix.Open(filepath.Join(dir, fifoFile), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
				if err != nil {
					return fmt.Errorf("open exec fifo: %w", err)
				}
				run.fifo = fifo
				detach()
				return nil
			}
		}
		if err := c.runnerPlaced(p, filter, sent); err != nil {
			return err
		}
	} else {
		if err := p.enc.Encode(message{Ready: true, Placed: true}); err != nil {
			return p.initFailed(early, fmt.Errorf("release container init: %w", err))
		}
		var m message
		if err := recvMessage(ctx, p.dec, &m); err != nil {
			return err
		}
		if !m.Ready {
			return fmt.Errorf("container init sent no ready message")
		}
	}
	r.log.Debug("init: closing the pipe to signal completion: the init reported its setup done", "container", id, "init", p.pid)
	if consoleMine != nil {
		// Sent before "ready": in the socket's buffer now.
		master, err := recvConsole(consoleMine)
		if err != nil {
			return fmt.Errorf("container %s: the terminal: %w", id, err)
		}
		if err := o.Console(master); err != nil {
			return err
		}
	}
	if !recorded {
		if err := c.recordCreated(p, o); err != nil {
			return err
		}
	}
	if o.PidFile != "" {
		pf, err := filepath.Abs(o.PidFile)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Dir(pf), filepath.Base(pf), []byte(strconv.Itoa(c.st.Pid))); err != nil {
			return fmt.Errorf("write pid file: %w", err)
		}
	}
	if run != nil {
		run.st = c.st
	}
	return nil
}

// recordCreated records the container created and tells its monitor.
func (c *creation) recordCreated(p *pair, o CreateOptions) error {
	c.st.Status = StatusCreated
	c.st.CallerReaps = o.CallerReaps
	if err := writeJSONAtomic(c.dir, stateFile, &c.st); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return p.created(c.dir, o.CallerReaps, &c.st)
}

func joins(p nsPlan, flag int) bool {
	for _, j := range p.Join {
		if j.Flag == flag {
			return true
		}
	}
	return false
}

// recvMessage reads one message; an error message or EOF is an error.
func recvMessage(ctx context.Context, dec *json.Decoder, m *message) error {
	if err := dec.Decode(m); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("container init exited during setup")
		}
		return fmt.Errorf("read from container init: %w", err)
	}
	if m.Error != "" {
		return errors.New(m.Error)
	}
	return nil
}

// creation is one Create in progress: what to undo if it fails.
type creation struct {
	r       *Runtime
	id, dir string
	spec    *specs.Spec
	st      State
	monitor int // PID, 0 before it is started
	cgroup  cgroups.Manager
	// cgroupReady: prepareCgroup made the cgroup and set its resources.
	cgroupReady bool
	joins       bool // the runner init joins its v1 cgroups itself (runnerStart)
	cgroupns    bool // with joins: it makes its cgroup namespace after
	// spareCgroup is the cgroup a spare init waited in (nil: none);
	// adopted: prepareCgroup made it the container's (no move needed).
	spareCgroup *cgroups.Spare
	adopted     bool
	// clonedIn: the init was cloned into its cgroup2 directory
	// (CLONE_INTO_CGROUP); only the v1 hierarchies are left to join.
	clonedIn bool
}

// intoDriver is a cgroup driver whose containers' inits can be cloned
// into their cgroup2 directory (cgroups.CloneTarget).
type intoDriver interface {
	ClonesIntoCgroup() bool
}

// clonesIntoCgroup says whether a create that starts its own init clones
// it into its cgroup (the cgroupfs driver where a cgroup2 hierarchy is
// mounted): no move into the cgroup2 hierarchy then, on a pure v2 host no
// move at all, so no wait for an RCU grace period (cgroups.CloneTarget).
func (r *Runtime) clonesIntoCgroup() bool {
	d, err := r.cgroupDriver()
	if err != nil || d == nil {
		return false
	}
	i, ok := d.(intoDriver)
	return ok && i.ClonesIntoCgroup()
}

// configureInto sends the monitor its configuration with the container's
// cgroup2 directory, made by prepareCgroup, to clone the init into; or,
// where there is none after all, without.
func (c *creation) configureInto(p *pair) error {
	var dir *os.File
	if t, ok := c.cgroup.(cgroups.CloneTarget); ok && c.cgroupReady {
		f, err := t.OpenUnified()
		if err != nil {
			return err
		}
		dir = f
	}
	if dir == nil {
		p.cfg.IntoCgroup = false
		return p.configure(nil)
	}
	defer dir.Close()
	return p.configure(dir)
}

// joiner is a cgroup manager whose v1 cgroups a single-threaded process
// can join itself (cgroupfs: see cgroups.SelfPlacer).
type joiner interface {
	JoinFiles() []string
}

// adopter is a cgroup manager that can make a spare init's cgroup the
// container's (cgroupfs: see cgroups.Spare).
type adopter interface {
	Adopt(ctx context.Context, s *cgroups.Spare, r *specs.LinuxResources) error
}

func (c *creation) hookState(s Status) []byte {
	data, _ := json.Marshal(specs.State{
		Version: specs.Version, ID: c.id, Status: specs.ContainerState(s), Pid: c.st.Pid,
		Bundle: c.st.Bundle, Annotations: c.st.Annotations,
	})
	return data
}

// describedDriver is a cgroup driver that can name a container's unit
// (the systemd driver's Description=).
type describedDriver interface {
	DescribedManager(id, path, desc string) (cgroups.Manager, error)
}

// nameAnnotation is the annotation the daemon puts its manifest's name in.
const nameAnnotation = "dev.reconciled.name"

// cgroupManager makes the container's cgroup manager and records the
// driver and path in the state; it creates nothing.
func (c *creation) cgroupManager(ctx context.Context) error {
	d, err := c.r.cgroupDriver()
	if err != nil || d == nil {
		return err
	}
	var path string
	if c.spec.Linux != nil {
		path = c.spec.Linux.CgroupsPath
	}
	if path == "" {
		path = c.r.defaultCgroupsPath(c.id)
	}
	var m cgroups.Manager
	if dd, ok := d.(describedDriver); ok {
		desc := c.spec.Annotations[nameAnnotation]
		if desc == "" {
			desc = c.id
		}
		m, err = dd.DescribedManager(c.id, path, desc)
	} else {
		m, err = d.Manager(c.id, path)
	}
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	// Not made c.cgroup before the check: a failed create must not
	// remove (or thaw) a cgroup that is not its own.
	if err := CheckCgroupFree(ctx, m); err != nil {
		return err
	}
	c.cgroup = m
	c.st.CgroupDriver, c.st.CgroupPath = d.Name(), path
	return nil
}

// prepareCgroup creates the cgroup and sets its resources in the
// background where the driver can make a cgroup with no process in it
// (cgroupfs; a systemd scope starts with its first PID), and sends the
// outcome on the channel it returns. A spare init's cgroup becomes the
// container's where it can (adopted): the init is then in it already.
func (c *creation) prepareCgroup(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	if c.cgroup == nil || c.st.CgroupDriver != "cgroupfs" {
		done <- nil
		return done
	}
	c.cgroupReady = true
	res := c.resources()
	go func() {
		if a, ok := c.cgroup.(adopter); ok && c.spareCgroup != nil {
			err := a.Adopt(ctx, c.spareCgroup, res)
			if err == nil {
				c.adopted = true
				done <- nil
				return
			}
			if !errors.Is(err, cgroups.ErrNotAdoptable) {
				done <- fmt.Errorf("unable to apply cgroup: %w", err)
				return
			}
			c.r.log.Debug("the spare init's cgroup cannot become the container's; moving the init", "container", c.id, "err", err)
		}
		if err := c.cgroup.Apply(ctx, 0, res); err != nil {
			done <- fmt.Errorf("unable to apply cgroup: %w", err)
			return
		}
		done <- nil
	}()
	return done
}

func (c *creation) resources() *specs.LinuxResources {
	var res *specs.LinuxResources
	if c.spec.Linux != nil {
		res = c.spec.Linux.Resources
	}
	return cgroupResources(res)
}

// applyCgroup moves the init into the cgroup that prepareCgroup made, or
// creates it with its resources and the init in it.
func (c *creation) applyCgroup(ctx context.Context) error {
	m := c.cgroup
	if m == nil {
		return nil
	}
	res := c.resources()
	if c.cgroupReady {
		res = nil // set already: only create (a no-op) and join
	}
	if t, ok := m.(cgroups.CloneTarget); ok && c.clonedIn && c.cgroupReady {
		if c.joins {
			// The init joins its v1 cgroups itself once placed.
		} else if err := t.ApplyCloned(ctx, c.st.Pid); err != nil {
			return fmt.Errorf("unable to apply cgroup: %w", err)
		}
	} else if !c.adopted {
		if err := m.Apply(ctx, c.st.Pid, res); err != nil {
			return fmt.Errorf("unable to apply cgroup: %w", err)
		}
		if s := c.spareCgroup; s != nil {
			c.spareCgroup = nil
			go c.r.removeSpareCgroup(s) // the init has left it
		}
	}
	c.st.CgroupPaths = m.Paths()
	c.st.OOMKillsAtStart, _ = readOOMKills(c.st.CgroupDriver, c.id, c.st.CgroupPath, c.st.CgroupPaths)
	return nil
}

// teardown undoes a failed create: kill the init, wait for the monitor,
// remove the cgroup and the state directory.
func (c *creation) teardown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if c.st.Pid > 0 {
		if fd, err := openPidfd(c.st.Pid, c.st.PidStartTime); err == nil {
			if err := signalPidfd(fd, unix.SIGKILL); err != nil && !errors.Is(err, errGone) {
				errs = append(errs, err)
			}
			unix.Close(fd)
		}
	}
	if c.monitor > 0 {
		if c.st.Pid <= 0 {
			unix.Kill(c.monitor, unix.SIGKILL)
		}
		if err := waitProcess(ctx, c.st.MonitorPid, c.st.MonitorStartTime); err != nil {
			errs = append(errs, fmt.Errorf("wait for monitor: %w", err))
		}
	}
	if c.cgroup != nil {
		if err := c.cgroup.Destroy(ctx); err != nil {
			errs = append(errs, fmt.Errorf("unable to remove cgroup: %w", err))
		}
	}
	if s := c.spareCgroup; s != nil && !c.adopted {
		if err := s.Remove(ctx); err != nil {
			errs = append(errs, fmt.Errorf("unable to remove the spare init's cgroup: %w", err))
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// reapWhenDone reaps a child without holding an OS thread meanwhile: its
// pidfd sits in the runtime's poller until the child exits.
func reapWhenDone(pid int) {
	if fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK); err == nil {
		f := os.NewFile(uintptr(fd), "pidfd")
		if rc, err := f.SyscallConn(); err == nil {
			rc.Read(func(fd uintptr) bool {
				p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				n, _ := unix.Poll(p, 0)
				return n > 0
			})
		}
		f.Close()
	}
	var ws unix.WaitStatus
	retryEINTR(func() error { _, err := unix.Wait4(pid, &ws, 0, nil); return err })
}

// selfExe returns a read-only handle on this binary, made once per
// Runtime: a read-only bind mount of /proc/self/exe, opened, then detached.
// Monitors and inits are exec'd through it, so their /proc/PID/exe is a
// file on a read-only mount and cannot be opened for writing from a
// container (CVE-2019-5736). As shipped, they then run the stage binary
// appended to it (stage.go).
func (r *Runtime) selfExe() (*os.File, error) {
	r.exeOnce.Do(func() { r.exe, r.exeErr = readOnlySelfExe(r.root) })
	return r.exe, r.exeErr
}

func readOnlySelfExe(dir string) (*os.File, error) {
	tmp, err := os.CreateTemp(dir, ".exe-")
	if err != nil {
		return nil, fmt.Errorf("read-only exe: %w", err)
	}
	name := tmp.Name()
	tmp.Close()
	defer os.Remove(name)
	if err := unix.Mount("/proc/self/exe", name, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("read-only exe: %w", os.NewSyscallError("mount", err))
	}
	defer unix.Unmount(name, unix.MNT_DETACH)
	if err := unix.Mount("", name, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return nil, fmt.Errorf("read-only exe: %w", os.NewSyscallError("mount(remount ro)", err))
	}
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("read-only exe: %w", err)
	}
	return highFile(fd, "reconciled-exe")
}

// highFile moves fd (closed) to a close-on-exec descriptor at 100 or above
// and returns it as a file: far above the fds exec.Cmd and ForkExec dup2
// into place in a child, so that it still exists when the child execs
// /proc/self/fd/N.
func highFile(fd int, name string) (*os.File, error) {
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 100)
	unix.Close(fd)
	if err != nil {
		return nil, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", err)
	}
	return os.NewFile(uintptr(high), name), nil
}

// sealedProgram is a program's sealed memfd, made once (get).
type sealedProgram struct {
	once sync.Once
	f    *os.File
	err  error
}

// get returns the memfd, made by mk on first use and moved to a high
// descriptor (see highFile); what names the program in the error.
func (s *sealedProgram) get(what, name string, mk func() (int, error)) (*os.File, error) {
	s.once.Do(func() {
		fd, err := mk()
		if err == nil {
			s.f, err = highFile(fd, name)
		}
		if err != nil {
			s.err = fmt.Errorf("%s: %w", what, err)
		}
	})
	return s.f, s.err
}
