package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/executor/ociruntime"
	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/image/layer"
	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/internal/sys"
	"reconciled.dev/reconciled/reconciler"
)

// runtimeAdapter is the reconciler's Executor on top of executor.Runtime:
// it writes each container's bundle, opens its log file and hands it over
// as the container's stdout and stderr, and keeps the observer's cache and
// the exit watcher informed of everything it does.
type runtimeAdapter struct {
	rt     *executor.Runtime
	cg     cgroups.Driver
	layout Layout
	logDir string
	// logDriver is LogDriverFile ("" too) or LogDriverJournald; journal
	// is journald's stream socket for the latter.
	logDriver string
	journal   string
	store     *actual.Store
	exits     *exitWatcher
	log       *slog.Logger
	onExit    func(name string, e exitInfo) // a stopped container is about to be deleted
	// oci are the OCI-CLI runtimes by name (runc, crun, --runtime ones)
	// and the choice of a container's runtime: a container whose spec or
	// state names one is run by it, any other by rt.
	oci *ociruntime.Runtimes
	// images is the image store the root filesystems of image
	// containers come from (nil: none configured).
	images imageStore
	// touched are the images used since the last write of their use
	// (touch).
	touchMu sync.Mutex
	touched map[string]bool
	// hidden are the daemon's own directories (state, logs, images):
	// masked in every container whose root is the host's.
	hidden []string
	// cgParent is where the containers' cgroups go (each one's path is
	// recorded in its runtime state at create).
	cgParent cgroupParent
	// events gets what the adapter finds and does on its own (a lost or
	// unreadable runtime state), for status NAME; nil: nowhere.
	events *eventLog
	// userns hands out the host IDs of userns: auto containers.
	userns *usernsAlloc
}

// note records an event of container id that the loop does not log.
func (a *runtimeAdapter) note(id, action, reason string) {
	if a.events != nil {
		a.events.add(id, Event{Time: time.Now().UTC(), Action: action, Reason: reason})
	}
}

// exitInfo is how a container's last run ended.
type exitInfo struct {
	Code      int
	OOMKilled bool
	// SpecHash is the hash of the definition that ran: status shows the
	// exit only beside a container of that definition (a restart), not
	// beside the one that replaced it.
	SpecHash string
}

// Create writes STATE/bundles/NAME/config.json and creates the container
// with LOGDIR/NAME.log (opened O_APPEND) as its stdout and stderr: the
// container writes its log itself, so a daemon restart does not cut it.
func (a *runtimeAdapter) Create(ctx context.Context, id string, spec *specs.Spec) error {
	_, err := a.create(ctx, id, spec, false)
	return err
}

// CreateStart is Create, then Start (reconciler.CreateStarter): with the
// daemon's own runtime in one call (executor.CreateAndStart), which
// releases the init as soon as it is set up. created reports whether the
// create succeeded: an error then is the start's, and what the create
// made is left as a failed Start leaves it.
func (a *runtimeAdapter) CreateStart(ctx context.Context, id string, spec *specs.Spec) (created bool, err error) {
	return a.create(ctx, id, spec, true)
}

// create is Create, and with start CreateStart.
func (a *runtimeAdapter) create(ctx context.Context, id string, spec *specs.Spec, start bool) (created bool, err error) {
	defer a.store.Invalidate(id)
	a.oci.Forget(id)
	// failed: the create failed (not only the start).
	failed := func() bool { return err != nil && !created }
	defer func() {
		if !failed() {
			a.oci.Remember(id, spec.Annotations[ociruntime.AnnotationRuntime])
		}
	}()
	if spec.Root != nil && spec.Root.Path == "/" && len(a.hidden) > 0 {
		spec = maskDaemonPaths(spec, a.hidden)
	}
	if spec.Annotations[desired.AnnotationUserns] == desired.UsernsAuto {
		// Never a silent fallback to the host's IDs: no range, no
		// container (the error is its status).
		if a.userns == nil {
			return false, fmt.Errorf("create %s: userns: auto: the daemon has no subordinate ID allocator", id)
		}
		s, err := a.userns.withUserns(id, spec)
		if err != nil {
			return false, fmt.Errorf("create %s: %w", id, err)
		}
		spec = s
	}
	spec = withCgroupsPath(spec, a.cgroupsPath(id))
	if digest := spec.Annotations[desired.AnnotationImageDigest]; digest != "" {
		if err := a.mountImage(id, spec, digest); err != nil {
			return false, err
		}
		defer func() {
			if failed() {
				if uerr := a.unmountImage(id); uerr != nil {
					a.log.Warn("unable to remove the root filesystem of a failed create", "container", id, "err", uerr)
				}
			}
		}()
	}
	if o, err := a.oci.ForSpec(spec); err != nil {
		return false, fmt.Errorf("create %s: %w", id, err)
	} else if o != nil {
		_, berr := os.Lstat(a.layout.Bundle(id))
		if err := a.clearStaleCgroup(ctx, id, berr == nil); err != nil {
			return false, err
		}
		if err := a.createOCI(ctx, o, id, spec); err != nil {
			return false, err
		}
		if !start {
			return true, nil
		}
		return true, a.Start(ctx, id)
	}
	bundle := a.layout.Bundle(id)
	// Whether it was there says, if the cgroup is in use, whether this
	// daemon created the container before (clearStaleCgroup).
	hadBundle := false
	if err := os.Mkdir(bundle, 0o700); errors.Is(err, fs.ErrExist) {
		hadBundle = true
	} else if err != nil {
		if err := os.MkdirAll(bundle, 0o700); err != nil {
			return false, fmt.Errorf("unable to create bundle %s: %w", bundle, err)
		}
	}
	if !hadBundle {
		// Not left by a create that failed and left nothing: the next
		// one would take a cgroup in use for this daemon's own. (A
		// runtime state left says where its cgroup is in the bundle.)
		defer func() {
			if failed() && !hasRuntimeState(a.layout, id) {
				os.RemoveAll(bundle)
			}
		}()
	}
	// Compact, as containerd writes a bundle's: it is read by programs
	// (hooks, `runtime state`'s bundle), and written at every create.
	data, err := json.Marshal(spec)
	if err != nil {
		return false, fmt.Errorf("unable to encode the spec of %s: %w", id, err)
	}
	// Not synced: after a crash the container is recreated, and its
	// bundle written again.
	if err := atomicfile.Write(bundle, "config.json", data, 0o600, atomicfile.NoSync); err != nil {
		return false, fmt.Errorf("unable to write %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	stdout, stderr, done, err := a.stdio(id)
	if err != nil {
		return false, err
	}
	defer done()
	opts := executor.CreateOptions{Spec: spec, Stdout: stdout, Stderr: stderr}
	var st *executor.State
	do := func() error {
		var err error
		if start {
			st, created, err = a.rt.CreateAndStart(ctx, id, bundle, opts)
		} else {
			err = a.rt.Create(ctx, id, bundle, opts)
			created = err == nil
		}
		return err
	}
	// The executor refuses a cgroup something runs in, having changed
	// nothing (ErrCgroupInUse): only then is it looked at (a lost state),
	// not before every create.
	err = do()
	if errors.Is(err, executor.ErrCgroupInUse) && !created {
		if cerr := a.clearStaleCgroup(ctx, id, hadBundle); cerr != nil {
			return false, cerr
		}
		err = do()
	}
	if err == nil && st != nil && st.Pid > 0 {
		a.exits.Watch(id, st.Pid, st.PidStartTime) // as Start
	}
	return created, err
}

// createOCI creates container id with an OCI-CLI runtime, with the same
// log handling as the native path.
func (a *runtimeAdapter) createOCI(ctx context.Context, o *ociruntime.Runtime, id string, spec *specs.Spec) error {
	stdout, stderr, done, err := a.stdio(id)
	if err != nil {
		return err
	}
	defer done()
	return o.Create(ctx, id, a.layout.Bundle(id), ociruntime.CreateOptions{Spec: spec, Stdout: stdout, Stderr: stderr})
}

// stdio opens container id's stdout and stderr as the log driver says:
// LOGDIR/NAME.log for both (file), or two journal streams (journald:
// PRIORITY=6 and 3, SYSLOG_IDENTIFIER=id). done closes them once the
// container has its own copies.
func (a *runtimeAdapter) stdio(id string) (stdout, stderr *os.File, done func(), err error) {
	if a.logDriver != LogDriverJournald {
		logf, err := openLog(a.logDir, id)
		if err != nil {
			return nil, nil, nil, err
		}
		return logf, logf, func() { logf.Close() }, nil
	}
	out, err := openJournalStream(a.journal, id, journalPrioStdout)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("container %s: %w", id, err)
	}
	errf, err := openJournalStream(a.journal, id, journalPrioStderr)
	if err != nil {
		out.Close()
		return nil, nil, nil, fmt.Errorf("container %s: %w", id, err)
	}
	return out, errf, func() { out.Close(); errf.Close() }, nil
}

// openLog opens (creating) LOGDIR/NAME.log for appending.
func openLog(dir, name string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("unable to create log directory %s: %w", dir, err)
	}
	p := LogFile(dir, name)
	// O_NOFOLLOW: a symlink planted at NAME.log must not make the daemon
	// (root) append a container's output to a file of the link's choosing.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, fmt.Errorf("unable to open log file: %w", err)
	}
	return f, nil
}

// Start starts the container and begins watching its init for an exit.
func (a *runtimeAdapter) Start(ctx context.Context, id string) error {
	defer a.store.Invalidate(id)
	if o, err := a.oci.Of(id); err != nil {
		return err
	} else if o != nil {
		if err := o.Start(ctx, id); err != nil {
			return err
		}
		if st, err := o.State(ctx, id); err == nil && st.Pid > 0 {
			a.exits.Watch(id, st.Pid, st.PidStartTime)
		}
		return nil
	}
	// A start cut short by a daemon killed after the exec is finished
	// instead of waiting for an init that no longer waits (StartState
	// sees the exec and records it).
	st, recovered, err := a.rt.StartState(ctx, id)
	if err != nil {
		return err
	}
	if recovered {
		a.log.Info("container had started before the daemon stopped; recorded it running", "container", id)
	}
	if st.Pid > 0 {
		a.exits.Watch(id, st.Pid, st.PidStartTime)
	}
	return nil
}

// Kill signals the init or, with all, every process in the cgroup; frozen
// processes are thawed so that they receive it.
func (a *runtimeAdapter) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	defer a.store.Invalidate(id)
	o, err := a.oci.Of(id)
	if err != nil {
		return err
	}
	kill := func(sig syscall.Signal) error {
		if o != nil {
			return o.Kill(ctx, id, sig, false)
		}
		return a.rt.Kill(ctx, id, sig)
	}
	st, err := a.rt.State(ctx, id)
	if err != nil {
		return err
	}
	// The daemon only signals to stop a container (removed, recreated). A
	// paused one is thawed first: a frozen process acts on no signal, not
	// even SIGKILL, so the stop would only run out its timeout.
	if executor.IsPaused(st) {
		if err := a.rt.Resume(ctx, id); err != nil {
			return fmt.Errorf("unable to resume paused container %s to stop it: %w", id, err)
		}
	}
	if !all {
		return kill(sig)
	}
	var errs []error
	m, merr := a.manager(st)
	if o == nil && sig == syscall.SIGKILL {
		// The executor's one kill-all: the init (with a PID namespace
		// of its own, the whole namespace), then what is left in the
		// cgroup, frozen while listed and killed.
		if _, err := executor.KillContainer(ctx, st, m, sig, a.log); err != nil {
			errs = append(errs, fmt.Errorf("unable to kill every process of %s: %w", id, err))
		}
		return errors.Join(append(errs, merr)...)
	}
	if st.Status == executor.StatusCreated || st.Status == executor.StatusRunning {
		if err := kill(sig); err != nil && !errors.Is(err, executor.ErrNotRunning) {
			errs = append(errs, err)
		}
	}
	if merr != nil || m == nil {
		return errors.Join(append(errs, merr)...)
	}
	if _, err := executor.KillCgroup(ctx, m, sig, a.log); err != nil {
		errs = append(errs, fmt.Errorf("unable to signal every process of %s: %w", id, err))
	}
	return errors.Join(errs...)
}

// Wait waits until the container's init has exited and its exit is
// recorded.
func (a *runtimeAdapter) Wait(ctx context.Context, id string) error {
	defer a.store.Invalidate(id)
	if o, err := a.oci.Of(id); err != nil {
		return err
	} else if o != nil {
		_, err := o.Wait(ctx, id)
		return err
	}
	_, err := a.rt.Wait(ctx, id)
	return err
}

// Delete removes the container (its processes, cgroup and state) and its
// bundle. A container that is already gone is not an error. Its log file
// stays.
func (a *runtimeAdapter) Delete(ctx context.Context, id string) error {
	defer a.store.Invalidate(id)
	defer a.oci.Forget(id)
	a.exits.Forget(id)
	st, err := a.rt.State(ctx, id)
	switch {
	case errors.Is(err, executor.ErrNotExist):
	case errors.Is(err, executor.ErrBadState):
		// The executor finds what runs for it through its cgroup
		// (under this daemon's parent) and stops it: never a second
		// copy beside one that is not tracked.
		if err := a.rt.Delete(ctx, id, true); err != nil && !errors.Is(err, executor.ErrNotExist) {
			return err
		}
		a.note(id, "stopped", "its runtime state was unreadable ("+err.Error()+"): what ran in its cgroup was killed")
	case err != nil:
		return err
	case ociruntime.NameOf(st) != "":
		if st.Exited && a.onExit != nil {
			a.onExit(id, exitInfo{Code: st.ExitCode, OOMKilled: st.OOMKilled, SpecHash: st.Annotations[desired.AnnotationSpecHash]})
		}
		if err := a.deleteOCI(ctx, id, ociruntime.NameOf(st)); err != nil {
			return err
		}
	default:
		if st.Exited && a.onExit != nil {
			a.onExit(id, exitInfo{Code: st.ExitCode, OOMKilled: st.OOMKilled, SpecHash: st.Annotations[desired.AnnotationSpecHash]})
		}
		if err := a.rt.Delete(ctx, id, true); err != nil && !errors.Is(err, executor.ErrNotExist) {
			return err
		}
		if st.Status == executor.StatusCreating {
			// Left half-created by a daemon that died: the executor's
			// state names neither processes nor cgroup, but the cgroup
			// may hold the init. It is where the bundle's spec says.
			if err := a.removeHalfCreatedCgroup(ctx, id); err != nil {
				return err
			}
		}
	}
	if err := a.unmountImage(id); err != nil {
		return err
	}
	if err := os.RemoveAll(a.layout.Bundle(id)); err != nil {
		return fmt.Errorf("unable to remove the bundle of %s: %w", id, err)
	}
	if a.userns != nil {
		if err := a.userns.free(id); err != nil {
			return err
		}
	}
	return nil
}

// maskDaemonPaths returns spec with dirs added to linux.maskedPaths (an
// empty read-only tmpfs over each): a container whose root is the host's
// must not see the daemon's state (every container's state.json, the
// status socket), logs or images, however read-only.
func maskDaemonPaths(spec *specs.Spec, dirs []string) *specs.Spec {
	s := *spec
	l := specs.Linux{}
	if spec.Linux != nil {
		l = *spec.Linux
	}
	l.MaskedPaths = append([]string(nil), l.MaskedPaths...)
	for _, d := range dirs {
		if !slices.Contains(l.MaskedPaths, d) {
			l.MaskedPaths = append(l.MaskedPaths, d)
		}
	}
	s.Linux = &l
	return &s
}

// mountImage mounts the root filesystem of container id, which runs the
// image with manifest digest: an overlay of the image's layers at
// STATE/rootfs/NAME with a writable layer of its own under STATE/rw/NAME
// (made read-only by the runtime when the spec's root is). Whatever an
// earlier create left there goes first.
func (a *runtimeAdapter) mountImage(id string, spec *specs.Spec, digest string) error {
	if a.images == nil {
		return fmt.Errorf("container %s runs image %s, but the daemon has no image store: %w", id, digest, reconciler.ErrTerminal)
	}
	img, err := a.images.GetDigest(digest)
	if err != nil {
		return fmt.Errorf("container %s: image %s: %w", id, digest, err)
	}
	target := a.layout.Rootfs(id)
	if spec.Root == nil || spec.Root.Path != target {
		return fmt.Errorf("container %s: root.path must be %s for an image (an oci fragment changed it): %w", id, target, reconciler.ErrTerminal)
	}
	if err := a.unmountImage(id); err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return fmt.Errorf("unable to create the root of %s: %w", id, err)
	}
	// Always an overlay with a writable layer of the container's own, as
	// containerd's snapshots are: the runtime creates the mount points
	// the image lacks (/proc, /dev, tmpfs targets) in it, then makes the
	// root read-only when root.readonly says so.
	rw := a.layout.RW(id)
	upper, work := filepath.Join(rw, "upper"), filepath.Join(rw, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("unable to create the writable layer of %s: %w", id, err)
		}
	}
	if spec.Annotations[desired.AnnotationUserns] == desired.UsernsAuto && spec.Linux != nil {
		// The overlay's layers are idmapped with the container's
		// mappings (an overlay mount cannot be): the image is root's
		// inside, and nothing is chowned.
		ns, err := a.rt.UserNamespace(spec.Linux.UIDMappings, spec.Linux.GIDMappings)
		if err != nil {
			return fmt.Errorf("unable to mount the root filesystem of %s: %w", id, err)
		}
		hostIDs := func(uid, gid uint32) (int, int) {
			return mappedID(spec.Linux.UIDMappings, uid), mappedID(spec.Linux.GIDMappings, gid)
		}
		err = layer.MountIDMapped(target, img.Layers, upper, work, ns, hostIDs)
		ns.Close()
		if err != nil {
			return fmt.Errorf("unable to mount the root filesystem of %s (image %s) for userns: auto: %w", id, digest, err)
		}
	} else if err := layer.Mount(target, img.Layers, upper, work); err != nil {
		return fmt.Errorf("unable to mount the root filesystem of %s (image %s): %w", id, digest, err)
	}
	if ref := spec.Annotations[desired.AnnotationImage]; ref != "" {
		a.touch(ref)
	}
	return nil
}

// mappedID is the host ID of id inside by the mappings ms (the overflow
// ID 65534 when none maps it, as the kernel shows it).
func mappedID(ms []specs.LinuxIDMapping, id uint32) int {
	for _, m := range ms {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return int(m.HostID + (id - m.ContainerID))
		}
	}
	return 65534
}

// touchDelay gathers the uses of images recorded in one write of the
// store's references: a use is for the garbage collector's
// least-recently-used order (minutes), and each write is a locked,
// fsynced rewrite of refs.json that would otherwise cost every create of
// an image container several milliseconds.
const touchDelay = time.Second

// touch records, in the background, that ref was used now.
func (a *runtimeAdapter) touch(ref string) {
	a.touchMu.Lock()
	defer a.touchMu.Unlock()
	if a.touched == nil {
		a.touched = map[string]bool{}
	}
	if len(a.touched) == 0 {
		time.AfterFunc(touchDelay, a.flushTouched)
	}
	a.touched[ref] = true
}

func (a *runtimeAdapter) flushTouched() {
	a.touchMu.Lock()
	refs := a.touched
	a.touched = nil
	a.touchMu.Unlock()
	for ref := range refs {
		if err := a.images.Touch(ref); err != nil && !errors.Is(err, image.ErrNotFound) {
			a.log.Debug("unable to record the use of an image", "image", ref, "err", err)
		}
	}
}

// unmountImage removes what mountImage made for container id: the mount,
// its mount point and the writable layer. Nothing there is not an error.
func (a *runtimeAdapter) unmountImage(id string) error {
	target := a.layout.Rootfs(id)
	if err := layer.Unmount(target); err != nil {
		return fmt.Errorf("unable to unmount the root filesystem of %s: %w", id, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unable to remove the root mount point of %s: %w", id, err)
	}
	rw := a.layout.RW(id)
	if _, err := os.Lstat(rw); err == nil {
		// Never removed across a mount: the writable layer is plain
		// directories the overlay wrote (unmounted above).
		if err := sys.RemoveTree(rw); err != nil {
			return fmt.Errorf("unable to remove the writable layer of %s: %w", id, err)
		}
	}
	return nil
}

// deleteOCI deletes a container an OCI-CLI runtime created. One that is
// no longer configured (or whose binary is gone) is still removed: the
// runtime's Delete kills its processes and removes its cgroup without the
// binary.
func (a *runtimeAdapter) deleteOCI(ctx context.Context, id, name string) error {
	o, err := a.oci.Named(name)
	if err != nil {
		a.log.Warn("container's runtime is not usable; removing it without", "container", id, "runtime", name, "err", err)
		if o, err = a.oci.WithoutBinary(name); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if err := o.Delete(ctx, id); err != nil && !errors.Is(err, executor.ErrNotExist) {
		return err
	}
	return nil
}

// removeHalfCreatedCgroup kills what is in the cgroup container id's
// bundle names (the driver's default when it names none) and removes it.
func (a *runtimeAdapter) removeHalfCreatedCgroup(ctx context.Context, id string) error {
	if a.cg == nil {
		return nil
	}
	var cgPath string
	if data, err := os.ReadFile(filepath.Join(a.layout.Bundle(id), "config.json")); err == nil {
		var spec specs.Spec
		if json.Unmarshal(data, &spec) == nil && spec.Linux != nil {
			cgPath = spec.Linux.CgroupsPath
		}
	}
	if cgPath == "" {
		cgPath = a.cgroupsPath(id)
	}
	m, err := a.cg.Manager(id, cgPath)
	if err != nil {
		return err
	}
	if err := executor.StopCgroup(ctx, m, a.log); err != nil {
		return fmt.Errorf("half-created container %s: %w", id, err)
	}
	return nil
}

// clearStaleCgroup makes sure a create of container id (which has no
// runtime state) finds its cgroup under this daemon's parent free. A
// cgroup there that is frozen or holds processes is this daemon's own
// stale one when the daemon created id before (its bundle was there
// before this create, hadBundle, or a process there is the child of a
// monitor of id: the runtime
// state was lost, or a create died half-way): it is
// frozen, killed, thawed and removed, never joined and never left beside
// a second copy. Anything else there is not the daemon's to touch: the
// create is refused, naming the cgroup and its processes.
func (a *runtimeAdapter) clearStaleCgroup(ctx context.Context, id string, hadBundle bool) error {
	if a.cg == nil || hasRuntimeState(a.layout, id) {
		return nil // the container exists: its create fails with ErrExist
	}
	m, err := a.cg.Manager(id, a.cgroupsPath(id))
	if err != nil {
		return err
	}
	inUse := executor.CheckCgroupFree(ctx, m)
	if inUse == nil {
		return nil
	}
	if !errors.Is(inUse, executor.ErrCgroupInUse) {
		return fmt.Errorf("create %s: %w", id, inUse)
	}
	if !hadBundle && !executor.MonitoredIn(ctx, m, id) {
		return fmt.Errorf("create %s: %w", id, inUse)
	}
	a.log.Warn("the container's cgroup is in use but the daemon has no runtime state for it (lost, or a create cut short): stopping what runs there before creating it",
		"container", id, "cgroup", inUse)
	if err := executor.StopCgroup(ctx, m, a.log); err != nil {
		return fmt.Errorf("create %s: unable to stop what is left in its cgroup: %w", id, err)
	}
	a.note(id, "stopped", "its runtime state was lost while it ran: what ran in its cgroup was killed before creating it again")
	return nil
}

// Update sets the resources of the container's cgroup in place.
func (a *runtimeAdapter) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	defer a.store.Invalidate(id)
	if o, err := a.oci.Of(id); err != nil {
		return err
	} else if o != nil {
		if err := o.Update(ctx, id, r); err != nil {
			return fmt.Errorf("unable to set the resources of %s: %w", id, err)
		}
		return nil
	}
	if err := a.rt.Update(ctx, id, r); err != nil {
		return fmt.Errorf("unable to set the resources of %s: %w", id, err)
	}
	return nil
}

// cgroupsPath is the linux.cgroupsPath of container id under this
// daemon's cgroup parent ("" without a cgroup driver).
func (a *runtimeAdapter) cgroupsPath(id string) string {
	if a.cg == nil || a.cgParent.Cgroupfs == "" {
		return ""
	}
	return a.cgParent.Path(a.cg.Name(), id)
}

// manager returns the cgroup manager of a container (nil when it has no
// cgroup).
func (a *runtimeAdapter) manager(st *executor.State) (cgroups.Manager, error) {
	if st.CgroupDriver == "" {
		return nil, nil
	}
	if a.cg == nil || a.cg.Name() != st.CgroupDriver {
		return nil, fmt.Errorf("container %s uses cgroup driver %q, not the daemon's", st.ID, st.CgroupDriver)
	}
	return a.cg.Manager(st.ID, st.CgroupPath)
}

// lastExits remembers how each container's previous run ended, for
// status (a restart deletes the exited container).
type lastExits struct {
	mu sync.Mutex
	m  map[string]exitInfo
}

func (l *lastExits) set(name string, e exitInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]exitInfo{}
	}
	l.m[name] = e
}

func (l *lastExits) get(name string) (exitInfo, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[name]
	return e, ok
}

func (l *lastExits) forget(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, name)
}
