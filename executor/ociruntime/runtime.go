package ociruntime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/sys"
)

// AnnotationRuntime is the state annotation that names the runtime that
// created a container ("native" when absent).
const AnnotationRuntime = "dev.reconciled.runtime"

// OCIVersion is the ociVersion of the config.json written for a runtime.
const OCIVersion = "1.0.2"

// Config is what New needs. Name and Path are required.
type Config struct {
	// Name is the runtime's name as manifests give it (runc, crun, ...).
	Name string
	// Path is the binary (absolute, or looked up in PATH at each call).
	Path string
	// StateRoot holds the containers' state in the native format
	// (default executor.DefaultRoot).
	StateRoot string
	// RuntimeRoot is the runtime's --root (default
	// /run/reconciled/oci/NAME); it must not be inside StateRoot.
	RuntimeRoot string
	// Cgroups is the daemon's cgroup driver (nil: none recorded):
	// cgroupfs, or systemd (the runtime is run with --systemd-cgroup).
	// cgroupfs is supported.
	Cgroups cgroups.Driver
	Logger  *slog.Logger
}

// Runtime drives one OCI runtime binary. Its methods are safe for
// concurrent use on different containers.
type Runtime struct {
	cfg Config
	log *slog.Logger
}

// New returns the runtime cfg describes. It does not check that the binary
// exists: a missing binary is each container's error, not the caller's.
func New(cfg Config) (*Runtime, error) {
	if cfg.Name == "" || cfg.Path == "" {
		return nil, errors.New("ociruntime: Name and Path are required")
	}
	if cfg.StateRoot == "" {
		cfg.StateRoot = executor.DefaultRoot
	}
	if cfg.RuntimeRoot == "" {
		cfg.RuntimeRoot = filepath.Join("/run/reconciled/oci", cfg.Name)
	}
	if rel, err := filepath.Rel(cfg.StateRoot, cfg.RuntimeRoot); err == nil && !strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("ociruntime: runtime root %s is inside the state root %s", cfg.RuntimeRoot, cfg.StateRoot)
	}
	if cfg.Cgroups != nil && cfg.Cgroups.Name() != "cgroupfs" && cfg.Cgroups.Name() != "systemd" {
		return nil, fmt.Errorf("ociruntime %s: cgroup driver %s: %w", cfg.Name, cfg.Cgroups.Name(), executor.ErrNotSupported)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Runtime{cfg: cfg, log: cfg.Logger}, nil
}

// Name is the runtime's name.
func (r *Runtime) Name() string { return r.cfg.Name }

// StateRoot is where the containers' state is.
func (r *Runtime) StateRoot() string { return r.cfg.StateRoot }

// binary resolves the runtime binary, or returns ErrRuntimeNotFound.
func (r *Runtime) binary() (string, error) {
	p, err := exec.LookPath(r.cfg.Path)
	if err != nil {
		return "", fmt.Errorf("runtime %s: %s: %w (%v)", r.cfg.Name, r.cfg.Path, ErrRuntimeNotFound, err)
	}
	return p, nil
}

func (r *Runtime) globalArgs() []string {
	if r.cfg.Cgroups != nil && r.cfg.Cgroups.Name() == "systemd" {
		return []string{"--root", r.cfg.RuntimeRoot, "--systemd-cgroup"}
	}
	return []string{"--root", r.cfg.RuntimeRoot}
}

// defaultCgroupsPath is the linux.cgroupsPath that makes the runtime put
// container id where the daemon's driver looks for it by default:
// DefaultParent/id with cgroupfs, reconciled-<id>.scope in
// reconciled.slice with systemd (runc's "slice:prefix:name").
func defaultCgroupsPath(driver, id string) string {
	if driver == "systemd" {
		return cgroups.DefaultSlice + ":" + cgroups.DefaultScopePrefix + ":" + id
	}
	return cgroups.DefaultParent + "/" + id
}

// run runs the runtime with args and returns its stdout; a failure wraps
// ErrRuntimeFailed and says what the runtime wrote on stderr.
func (r *Runtime) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	bin, err := r.binary()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, append(r.globalArgs(), args...)...)
	cmd.Env = runtimeEnv()
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	// The runtime, and a container it starts, run as the daemon was
	// started, not as its batch threads (sys.Batch).
	err = sys.AsStarted(cmd.Start)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", r.cfg.Name, args[0], ErrRuntimeFailed, msg)
	}
	return out.Bytes(), nil
}

// CreateOptions are Create's optional inputs.
type CreateOptions struct {
	Spec           *specs.Spec
	Stdout, Stderr *os.File // the container's (default /dev/null)
}

// Create writes BUNDLE/config.json from o.Spec and creates container id
// with the runtime, under a monitor that records its exit (see the package
// doc). It returns once the container is created and recorded; on error
// nothing of it is left.
func (r *Runtime) Create(ctx context.Context, id, bundle string, o CreateOptions) (err error) {
	if err := executor.ValidateID(id); err != nil {
		return err
	}
	if o.Spec == nil {
		return errors.New("ociruntime: no spec")
	}
	bin, err := r.binary()
	if err != nil {
		return err
	}
	if o.Spec.Root != nil && filepath.Clean(o.Spec.Root.Path) == "/" {
		// runc and crun pivot_root into the root: the host's own root
		// cannot be one (EBUSY).
		return fmt.Errorf("container %s: runtime %s cannot run a container whose root.path is the host's / (pivot_root fails): %w; use a directory holding a root filesystem, or runtime: native", id, r.cfg.Name, executor.ErrNotSupported)
	}
	spec := *o.Spec
	// crun 1.8 refuses ociVersions it does not know ("unknown version
	// specified") and runc 1.1 implements 1.0.2; the generated spec uses
	// nothing newer.
	spec.Version = OCIVersion
	if spec.Linux != nil {
		l := *spec.Linux
		if l.CgroupsPath == "" && r.cfg.Cgroups != nil {
			l.CgroupsPath = defaultCgroupsPath(r.cfg.Cgroups.Name(), id)
		}
		spec.Linux = &l
	}
	data, err := json.MarshalIndent(&spec, "", "  ")
	if err != nil {
		return fmt.Errorf("unable to encode the spec of %s: %w", id, err)
	}
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return fmt.Errorf("unable to create bundle %s: %w", bundle, err)
	}
	if err := atomicfile.Write(bundle, "config.json", data, 0o600, atomicfile.NoSync); err != nil {
		return fmt.Errorf("unable to write the config.json of %s: %w", id, err)
	}
	if err := os.MkdirAll(r.cfg.StateRoot, 0o700); err != nil {
		return fmt.Errorf("unable to create state root %s: %w", r.cfg.StateRoot, err)
	}
	if err := os.MkdirAll(r.cfg.RuntimeRoot, 0o700); err != nil {
		return fmt.Errorf("unable to create runtime root %s: %w", r.cfg.RuntimeRoot, err)
	}
	dir := executor.StateDir(r.cfg.StateRoot, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("container %s: %w", id, executor.ErrExist)
		}
		return fmt.Errorf("unable to create state directory %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	annotations := map[string]string{}
	for k, v := range spec.Annotations {
		annotations[k] = v
	}
	annotations[AnnotationRuntime] = r.cfg.Name
	st := executor.State{
		OCIVersion: specs.Version, ID: id, Status: executor.StatusCreating, Bundle: bundle,
		Annotations: annotations,
	}
	if spec.Root != nil {
		st.Rootfs = spec.Root.Path
	}
	if r.cfg.Cgroups != nil && spec.Linux != nil {
		// The path the runtime is given, recorded as the native
		// executor records it: the daemon's manager of (id, path)
		// finds the same directories.
		st.CgroupDriver, st.CgroupPath = r.cfg.Cgroups.Name(), spec.Linux.CgroupsPath
		if m, err := r.cfg.Cgroups.Manager(id, st.CgroupPath); err == nil {
			st.CgroupPaths = m.Paths()
		}
	}
	if err := atomicfile.WriteJSON(dir, stateFile, &st, 0o600, atomicfile.SyncDir); err != nil {
		return fmt.Errorf("unable to write the state of %s: %w", id, err)
	}
	// The marker executor.ReadState takes for "created" (a regular file
	// here: nothing waits on it).
	if err := os.WriteFile(filepath.Join(dir, fifoFile), nil, 0o600); err != nil {
		return fmt.Errorf("unable to write the created marker of %s: %w", id, err)
	}

	cfg, err := json.Marshal(monitorConfig{Runtime: bin, GlobalArgs: r.globalArgs(), ID: id, Bundle: bundle, StateDir: dir})
	if err != nil {
		return err
	}
	reportR, reportW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer reportR.Close()
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		reportW.Close()
		return err
	}
	defer lifeW.Close()
	mon := exec.Command("/proc/self/exe")
	mon.Args = []string{"reconciled-oci-monitor", id}
	mon.Env = append(runtimeEnv(), monitorEnv+"="+string(cfg), "GOMAXPROCS=1")
	mon.Stdout, mon.Stderr = o.Stdout, o.Stderr
	mon.ExtraFiles = []*os.File{reportW, lifeR}
	mon.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// As the daemon was started (sys.Batch): the runtime it runs, and the
	// container's init, inherit it.
	err = sys.AsStarted(mon.Start)
	reportW.Close()
	lifeR.Close()
	if err != nil {
		return fmt.Errorf("unable to start the monitor of %s: %w", id, err)
	}
	monPid := mon.Process.Pid
	// The daemon reaps its own monitors; after a daemon restart they
	// are reparented and reaped by whoever adopts them.
	go mon.Wait()

	type result struct {
		m   monitorMessage
		err error
	}
	got := make(chan result, 1)
	go func() {
		var m monitorMessage
		err := json.NewDecoder(bufio.NewReader(reportR)).Decode(&m)
		got <- result{m, err}
	}()
	var res result
	select {
	case res = <-got:
	case <-ctx.Done():
		unix.Kill(monPid, unix.SIGKILL)
		r.run(context.WithoutCancel(ctx), nil, "delete", "--force", id)
		return fmt.Errorf("create %s: %w", id, context.Cause(ctx))
	}
	switch {
	case res.err != nil:
		r.run(context.WithoutCancel(ctx), nil, "delete", "--force", id)
		return fmt.Errorf("create %s with %s: monitor ended without a report: %w", id, r.cfg.Name, res.err)
	case res.m.Error != "":
		return fmt.Errorf("create %s with %s: %w: %s", id, r.cfg.Name, ErrRuntimeFailed, res.m.Error)
	}
	st.Status = executor.StatusCreated
	st.Pid = res.m.Pid
	st.Created = time.Now().UTC()
	if st.PidStartTime, _, err = proc.StartTime(st.Pid); err != nil {
		r.run(context.WithoutCancel(ctx), nil, "delete", "--force", id)
		return fmt.Errorf("create %s: the init (pid %d) is gone: %w", id, st.Pid, err)
	}
	st.MonitorPid = monPid
	// The runtime made the cgroup: a reused one's OOM kills are not
	// this container's.
	st.OOMKillsAtStart, _ = oomKills(st.CgroupPaths)
	st.MonitorStartTime, _, _ = proc.StartTime(monPid)
	if err := atomicfile.WriteJSON(dir, stateFile, &st, 0o600, atomicfile.SyncDir); err != nil {
		r.run(context.WithoutCancel(ctx), nil, "delete", "--force", id)
		return fmt.Errorf("unable to write the state of %s: %w", id, err)
	}
	if _, err := lifeW.Write([]byte{1}); err != nil {
		return fmt.Errorf("create %s: monitor gone: %w", id, err)
	}
	return nil
}

// State reads container id's state (the native executor's reader: status
// from the live system, exit from the monitor's record). A container of
// another runtime is an error wrapping ErrNotOurs.
func (r *Runtime) State(ctx context.Context, id string) (*executor.State, error) {
	st, err := executor.ReadState(r.cfg.StateRoot, id)
	if err != nil {
		return nil, err
	}
	if st.Status != executor.StatusCreating && st.Annotations[AnnotationRuntime] != r.cfg.Name {
		return nil, fmt.Errorf("container %s: runtime %q: %w", id, st.Annotations[AnnotationRuntime], ErrNotOurs)
	}
	return st, nil
}

// Start starts a created container. A container the runtime already
// started (a start cut short by a daemon that died) is recorded running.
func (r *Runtime) Start(ctx context.Context, id string) error {
	st, err := r.State(ctx, id)
	if err != nil {
		return err
	}
	if st.Status != executor.StatusCreated {
		return &executor.StateTransitionError{ID: id, Op: "start", From: st.Status}
	}
	started := time.Now().UTC()
	if _, err := r.run(ctx, nil, "start", id); err != nil {
		if s, serr := r.runtimeStatus(ctx, id); serr != nil || s != "running" {
			return err
		}
		r.log.Info("container had been started by the runtime; recorded it running", "container", id, "runtime", r.cfg.Name)
	}
	return r.recordStarted(id, started)
}

// recordStarted writes Started into id's state and removes the created
// marker.
func (r *Runtime) recordStarted(id string, started time.Time) error {
	dir := executor.StateDir(r.cfg.StateRoot, id)
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return fmt.Errorf("unable to read the state of %s: %w", id, err)
	}
	var st executor.State
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("unable to parse the state of %s: %w", id, err)
	}
	st.Status = executor.StatusRunning
	st.Started = started
	if err := atomicfile.WriteJSON(dir, stateFile, &st, 0o600, atomicfile.SyncDir); err != nil {
		return fmt.Errorf("unable to write the state of %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(dir, fifoFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unable to remove the created marker of %s: %w", id, err)
	}
	return nil
}

// runtimeStatus is the status the runtime's `state` reports.
func (r *Runtime) runtimeStatus(ctx context.Context, id string) (string, error) {
	out, err := r.run(ctx, nil, "state", id)
	if err != nil {
		return "", err
	}
	var s specs.State
	if err := json.Unmarshal(out, &s); err != nil {
		return "", fmt.Errorf("%s state %s: %w", r.cfg.Name, id, err)
	}
	return string(s.Status), nil
}

// Kill sends sig to the container's init, or with all to every process of
// the container.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	st, err := r.State(ctx, id)
	if err != nil {
		return err
	}
	if st.Status != executor.StatusCreated && st.Status != executor.StatusRunning {
		return &executor.StateTransitionError{ID: id, Op: "kill", From: st.Status}
	}
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	if _, err := r.run(ctx, nil, append(args, id, strconv.Itoa(int(sig)))...); err != nil {
		if st, serr := r.State(ctx, id); serr == nil && st.Status == executor.StatusStopped {
			return fmt.Errorf("kill %s: %w", id, executor.ErrNotRunning)
		}
		return err
	}
	return nil
}

// Wait returns the container's state once its init has exited and the
// exit is recorded (or its monitor is gone without recording it).
func (r *Runtime) Wait(ctx context.Context, id string) (*executor.State, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := r.State(ctx, id)
		if err != nil {
			return nil, err
		}
		if st.Exited {
			return st, nil
		}
		if st.Status == executor.StatusStopped && !proc.Running(st.MonitorPid, st.MonitorStartTime) {
			// The monitor may have recorded the exit and gone between
			// the read above and now: what is on disk once it is gone
			// is final.
			return r.State(ctx, id)
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-t.C:
		}
	}
}

// Delete removes the container: `delete --force` (its processes and
// cgroup), then its state once the monitor recorded the exit. A missing
// runtime binary does not keep it from being removed: its init is killed
// and its cgroup removed here. Deleting a container that does not exist
// is an error wrapping executor.ErrNotExist.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	st, err := r.State(ctx, id)
	if err != nil {
		return err
	}
	var errs []error
	if _, err := r.run(ctx, nil, "delete", "--force", id); err != nil {
		switch {
		case errors.Is(err, ErrRuntimeNotFound):
			r.log.Warn("runtime binary missing; removing the container without it", "container", id, "runtime", r.cfg.Name, "err", err)
			errs = append(errs, r.removeWithout(ctx, id, st)...)
		default:
			if _, serr := r.runtimeStatus(ctx, id); serr == nil {
				return err // the runtime still has it
			}
			// The runtime no longer knows it: nothing of it to delete.
		}
	} else if r.cfg.Cgroups != nil && st.CgroupDriver != "" {
		// The runtime removed the container's cgroup, not the
		// daemon's parent it was in: the driver removes that when
		// it is empty (a missing cgroup is no error).
		if m, err := r.cfg.Cgroups.Manager(id, st.CgroupPath); err == nil {
			if err := m.Destroy(ctx); err != nil {
				r.log.Debug("unable to remove what is left of the cgroup", "container", id, "err", err)
			}
		}
	}
	// The monitor records the exit and exits.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for proc.Running(st.MonitorPid, st.MonitorStartTime) && wctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if proc.Running(st.MonitorPid, st.MonitorStartTime) {
		unix.Kill(st.MonitorPid, unix.SIGKILL)
	}
	if err := os.RemoveAll(executor.StateDir(r.cfg.StateRoot, id)); err != nil {
		errs = append(errs, fmt.Errorf("unable to remove the state of %s: %w", id, err))
	}
	return errors.Join(errs...)
}

// removeWithout kills a container's processes and removes its cgroup and
// the runtime's state directory without the runtime binary.
func (r *Runtime) removeWithout(ctx context.Context, id string, st *executor.State) []error {
	var errs []error
	if proc.Running(st.Pid, st.PidStartTime) {
		if err := unix.Kill(st.Pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("unable to kill the init of %s: %w", id, err))
		}
	}
	if r.cfg.Cgroups != nil {
		m, err := r.cfg.Cgroups.Manager(id, st.CgroupPath)
		if err == nil {
			err = executor.StopCgroup(ctx, m, r.log)
		}
		if err != nil && !errors.Is(err, cgroups.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unable to remove the cgroup of %s: %w", id, err))
		}
	}
	// The runtime's own state: plain files, no mounts.
	if err := os.RemoveAll(filepath.Join(r.cfg.RuntimeRoot, id)); err != nil {
		errs = append(errs, fmt.Errorf("unable to remove the %s state of %s: %w", r.cfg.Name, id, err))
	}
	return errs
}

// Update sets the resources of a live container's cgroup
// (`update --resources -`).
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	if _, err := r.State(ctx, id); err != nil {
		return err
	}
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = r.run(ctx, data, "update", "--resources", "-", id)
	return err
}

// systemdEnv are the variables systemd hands the daemon. None may reach
// the runtime: with NOTIFY_SOCKET runc and crun pass the socket into the
// container and `start` waits for the container's READY=1.
var systemdEnv = []string{"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC"}

// runtimeEnv is the daemon's environment without systemdEnv.
func runtimeEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(systemdEnv, k) {
			out = append(out, kv)
		}
	}
	return out
}
