package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/waiter"
	procfs "reconciled.dev/reconciled/internal/proc" // proc is the exec'd process below
	"reconciled.dev/reconciled/internal/seccomp"
)

func init() {
	// Like the init stage, the exec stage joins a mount namespace and
	// changes credentials on the thread that finally execs: one OS thread.
	if os.Getenv(stageEnv) == stageExec {
		runtime.LockOSThread()
	}
}

// execsDir holds one file per process started by Exec (<pid>.json), so that
// Ps can tell them apart from the processes the container started itself.
const execsDir = "execs"

// execExtraEnv tells the exec stage how many extra files (ExtraFiles) it
// has on 3, 4, ...: its sync socket follows them (3 without any, as for
// the init), then the container's mount namespace.
const execExtraEnv = "_RECONCILED_EXEC_EXTRA"

// execLogEnv, when set, is the exec stage's fd for its debug log: one line
// per step, relayed by Exec to the runtime's logger at debug level. Set
// only when that logger logs debug messages (runc --debug exec).
const execLogEnv = "_RECONCILED_EXEC_LOG"

// ExecOptions describe a process to run in a live container. Whatever is
// not given is the container's: its process.env (with overrides), user,
// cwd, capabilities, noNewPrivileges and rlimits, read from the bundle's
// config.json.
type ExecOptions struct {
	// Args is the command and its arguments; Args[0] is looked up in the
	// container's PATH.
	Args []string
	// Env holds KEY=VALUE entries added to the container's environment,
	// replacing entries with the same key.
	Env []string
	// User, if not nil, replaces process.user (the additional groups too).
	User *specs.User
	// Cwd, if not empty, replaces process.cwd.
	Cwd string
	// Terminal allocates a pseudo-terminal in the container (its
	// /dev/pts/ptmx) as the process's controlling terminal and stdio; the
	// master is ExecProcess.Console. Stdin, Stdout and Stderr are then
	// ignored.
	Terminal bool
	// Stdin, Stdout and Stderr become the process's fds 0-2; nil means
	// /dev/null.
	Stdin, Stdout, Stderr *os.File
	// Capabilities are added to the process's bounding, effective,
	// permitted and ambient sets, as runc exec --cap does (an ambient one
	// is raised only where it is inheritable too).
	Capabilities []string
	// NoNewPrivileges sets no_new_privs for this process even where
	// process.noNewPrivileges does not.
	NoNewPrivileges bool
	// Scheduler and IOPriority, if not nil, replace process.scheduler and
	// process.ioPriority (runc exec --process gives them).
	Scheduler  *specs.Scheduler
	IOPriority *specs.LinuxIOPriority
	// ProbeServer runs the probe server (executor/waiter/probe_amd64.S)
	// instead of Args: a process with everything an exec'd one has, which
	// runs commands as its children when asked on Stdin (a SOCK_SEQPACKET
	// socket) with their output on Stdout and Stderr. Args is ignored.
	// Where ProbeServerAvailable is false it is an error.
	ProbeServer bool
	// IgnorePaused lets the process join a paused container (runc's
	// --ignore-paused): it is frozen with the rest until the container
	// is resumed, and Exec returns only then (or when ctx ends). Without
	// it, a paused container is refused.
	IgnorePaused bool
	// ExtraFiles become the process's fds 3, 4, ... (runc exec
	// --preserve-fds). At most MaxExtraFiles.
	ExtraFiles []*os.File
	// SubCgroups puts the process in sub-cgroups of the container's
	// cgroup instead (runc exec --cgroup): key "" gives one relative path
	// for every hierarchy (cgroup v2: the only way), a controller name
	// ("memory", "cpu") a path in that controller's hierarchy. A path
	// must stay inside the container's cgroup and exist; a controller the
	// container has no cgroup for is refused.
	SubCgroups map[string]string
}

// ProbeServerAvailable reports whether Exec can start a probe server on
// this architecture.
func ProbeServerAvailable() bool { return waiter.ProbeServerAvailable() }

// execConfig is what the creator sends the exec stage.
type execConfig struct {
	Process   *specs.Process `json:"process"`
	JoinMount bool           `json:"joinMount"`
	// Seccomp is the container's linux.seccomp compiled: an exec'd
	// process gets the container's filter (as with runc).
	Seccomp *seccomp.Program `json:"seccomp,omitempty"`
	// ProbeServerFd, when not 0, is the exec stage's fd holding the probe
	// server, which it execs instead of the process's args.
	ProbeServerFd int `json:"probeServerFd,omitempty"`
}

// execRecord is the file Ps reads to mark a process started by Exec.
type execRecord struct {
	Pid       int       `json:"pid"`
	StartTime uint64    `json:"startTime"`
	Args      []string  `json:"args"`
	Started   time.Time `json:"started"`
}

// ExecProcess is a process started by Exec. Its caller must Wait for it
// (it is the caller's child) or Release it.
type ExecProcess struct {
	// Pid is the process's PID on the host.
	Pid int
	// Console is the pseudo-terminal's master with ExecOptions.Terminal,
	// else nil. The caller closes it.
	Console *os.File

	pidfd  int
	record string // the execRecord file, removed by Wait
}

// ExitStatus is how a process ended: Code is the shell-style status
// (128+N when signal N killed it), Signal the signal's name then.
type ExitStatus struct {
	Code   int    `json:"exitCode"`
	Signal string `json:"signal,omitempty"`
}

// Exec starts a process in container id, which must be created or
// running (not stopped or paused): the process joins every namespace of the
// container's init and its cgroup, and gets the container's environment,
// user, capabilities, noNewPrivileges and rlimits unless o overrides them.
// It returns once the process has exec'd the command (or failed to: then
// the error says why). The caller must Wait for it.
func (r *Runtime) Exec(ctx context.Context, id string, o ExecOptions) (_ *ExecProcess, err error) {
	if o.ProbeServer {
		if !waiter.ProbeServerAvailable() {
			return nil, fmt.Errorf("exec in container %s: no probe server on %s", id, runtime.GOARCH)
		}
		o.Args, o.Terminal = []string{"reconciled-probe"}, false
	}
	if len(o.Args) == 0 {
		return nil, fmt.Errorf("exec in container %s: no command given", id)
	}
	if len(o.ExtraFiles) > MaxExtraFiles {
		return nil, fmt.Errorf("exec in container %s: %d extra files, at most %d can be passed", id, len(o.ExtraFiles), MaxExtraFiles)
	}
	st, err := ReadState(r.root, id)
	if err != nil {
		return nil, err
	}
	// A created container's init is set up (namespaces, root, cgroup)
	// and waits for start: runc lets a process join it then too.
	if st.Status != StatusRunning && st.Status != StatusCreated {
		return nil, &StateTransitionError{ID: id, Op: "exec in", From: st.Status}
	}
	if IsPaused(st) && !o.IgnorePaused {
		// "cannot exec in a paused container" is runc's wording.
		return nil, fmt.Errorf("exec in container %s: cannot exec in a paused container (resume it first): %w", id, ErrPaused)
	}
	// A process that joined every namespace but the user one would be
	// the host's root in the container: the user namespace is joined by
	// the joiner (waiter.UsernsJoinerAvailable) or the exec is refused.
	ownUserns := !sameNamespace("/proc/"+strconv.Itoa(st.Pid)+"/ns/user", "/proc/self/ns/user")
	if ownUserns && !waiter.UsernsJoinerAvailable() {
		return nil, fmt.Errorf("exec in container %s: the container has its own user namespace, and exec into one is %w on %s (setns(CLONE_NEWUSER) needs a single-threaded process)", id, ErrNotSupported, runtime.GOARCH)
	}
	spec, err := LoadSpec(st.Bundle)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: the bundle's config.json gives the process's environment and limits: %w", id, err)
	}
	if spec.Process == nil {
		return nil, fmt.Errorf("exec in container %s: %s has no process", id, filepath.Join(st.Bundle, "config.json"))
	}
	cgroupPaths, err := subCgroupPaths(st.CgroupPaths, o.SubCgroups)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", id, err)
	}
	p := execProcessSpec(spec.Process, o)
	if err := checkProcessSched(p); err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", id, err)
	}
	var filter *seccomp.Program
	if spec.Linux != nil {
		if filter, err = r.seccompFilter(spec.Linux.Seccomp); err != nil {
			return nil, fmt.Errorf("exec in container %s: %w", id, err)
		}
	}

	initFd, err := openPidfd(st.Pid, st.PidStartTime)
	if err != nil {
		if errors.Is(err, errGone) {
			return nil, fmt.Errorf("exec in container %s: %w", id, ErrNotRunning)
		}
		return nil, err
	}
	defer unix.Close(initFd)
	ns, err := openContainerNamespaces(st.Pid)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", id, err)
	}
	defer ns.close()
	// The namespaces were opened by PID: make sure they were the init's.
	if !procfs.Running(st.Pid, st.PidStartTime) {
		return nil, fmt.Errorf("exec in container %s: %w", id, ErrNotRunning)
	}

	exe, err := r.selfExe()
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	sock, child := fds[0], fds[1]
	defer unix.Close(sock)
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		unix.Close(child)
		return nil, err
	}
	defer null.Close()
	stdio := func(f *os.File) uintptr {
		if f == nil || o.Terminal {
			return null.Fd()
		}
		return f.Fd()
	}
	// The extra files go straight to their place, so that nothing the
	// stage's Go runtime opens lands there.
	files := []uintptr{stdio(o.Stdin), stdio(o.Stdout), stdio(o.Stderr)}
	for _, f := range o.ExtraFiles {
		files = append(files, f.Fd())
	}
	files = append(files, uintptr(child))
	if ns.mnt >= 0 {
		files = append(files, uintptr(ns.mnt))
	}
	serverFd := 0
	if o.ProbeServer {
		fd, err := waiter.ProbeServerMemfd()
		if err != nil {
			unix.Close(child)
			return nil, fmt.Errorf("exec in container %s: %w", id, err)
		}
		defer unix.Close(fd)
		serverFd = len(files)
		files = append(files, uintptr(fd))
	}
	env := []string{stageEnv + "=" + stageExec, "GOMAXPROCS=1", initGoDebug, execExtraEnv + "=" + strconv.Itoa(len(o.ExtraFiles))}
	var stageLog *stageLogRelay
	if r.log.Enabled(ctx, slog.LevelDebug) {
		if stageLog, err = relayStageLog(r.log.With("container", id, "stage", "exec")); err != nil {
			unix.Close(child)
			return nil, fmt.Errorf("exec in container %s: %w", id, err)
		}
		defer stageLog.close()
		env = append(env, execLogEnv+"="+strconv.Itoa(len(files)))
		files = append(files, stageLog.w.Fd())
	}
	path, argv := "/proc/self/fd/"+strconv.Itoa(int(exe.Fd())), []string{"reconciled-exec", id}
	if ownUserns {
		// The process starts as the joiner, which joins the user
		// namespace as its root and execs the stage (userns_amd64.S):
		// the namespace, the stage's binary, the sync socket and the
		// joiner itself by their places in files.
		userFd, err := unix.Open("/proc/"+strconv.Itoa(st.Pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			unix.Close(child)
			return nil, fmt.Errorf("exec in container %s: open its user namespace: %w", id, err)
		}
		defer unix.Close(userFd)
		joiner, err := waiter.UsernsJoinerMemfd()
		if err != nil {
			unix.Close(child)
			return nil, fmt.Errorf("exec in container %s: %w", id, err)
		}
		defer unix.Close(joiner)
		at := len(files)
		files = append(files, uintptr(userFd), exe.Fd(), uintptr(joiner))
		path = "/proc/self/fd/" + strconv.Itoa(at+2)
		argv = append([]string{strconv.Itoa(at), strconv.Itoa(at + 1), strconv.Itoa(3 + len(o.ExtraFiles)), strconv.Itoa(at + 2)}, argv...)
	}
	attr := &syscall.ProcAttr{Env: env, Files: files}
	// The wording of the debug messages is runc's (nsexec, init,
	// setns_init): runc's tests and its users grep for it.
	r.log.Debug("nsexec container setup: joining the namespaces of the container's init", "container", id, "init", st.Pid, "namespaces", len(ns.join))
	// The other namespaces are entered on a throw-away thread that then
	// forks: the child is born in them (in the PID namespace too). The
	// mount namespace is joined by the child itself (runExec), after its
	// exec of our binary resolved in the host's.
	pid, err := startIn(func() (int, error) {
		return syscall.ForkExec(path, argv, attr)
	}, ns.join)
	unix.Close(child)
	stageLog.started()
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: start process: %w", id, err)
	}
	proc := &ExecProcess{Pid: pid, pidfd: -1}
	defer func() {
		if err != nil {
			proc.abandon()
			err = fmt.Errorf("exec in container %s: %w", id, err)
		}
	}()
	if proc.pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
		return proc, os.NewSyscallError("pidfd_open", err)
	}
	start, _, err := procfs.StartTime(pid)
	if err != nil {
		return proc, err
	}
	// Into the container's cgroup before it runs anything of the user's.
	// The caller moves it: it is outside the container's cgroup namespace.
	if err := joinCgroup(cgroupPaths, pid); err != nil {
		return proc, err
	}
	if a := spec.Process.OOMScoreAdj; a != nil {
		if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte(strconv.Itoa(*a)), 0); err != nil {
			return proc, fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	if err := setProcessSched(pid, p); err != nil {
		return proc, err
	}
	dir := filepath.Join(StateDir(r.root, id), execsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return proc, err
	}
	name := strconv.Itoa(pid) + ".json"
	if err := writeJSONAtomic(dir, name, execRecord{Pid: pid, StartTime: start, Args: p.Args, Started: time.Now().UTC()}); err != nil {
		return proc, fmt.Errorf("record exec'd process: %w", err)
	}
	proc.record = filepath.Join(dir, name)

	data, err := json.Marshal(execConfig{Process: p, JoinMount: ns.mnt >= 0, Seccomp: filter, ProbeServerFd: serverFd})
	if err != nil {
		return proc, err
	}
	if _, err := unix.Write(sock, append(data, '\n')); err != nil {
		return proc, os.NewSyscallError("write exec config", err)
	}
	msg, console, err := readExecResult(ctx, sock, proc.pidfd)
	if console != nil {
		proc.Console = console
	}
	if err == nil {
		// The stage has exec'd or failed: its end of the log is closed.
		stageLog.wait()
	}
	if err != nil {
		return proc, err
	}
	if msg != "" {
		return proc, errors.New(msg)
	}
	if o.Terminal && proc.Console == nil {
		return proc, errors.New("the process sent no terminal")
	}
	return proc, nil
}

// execProcessSpec is the container's process with o's changes.
func execProcessSpec(base *specs.Process, o ExecOptions) *specs.Process {
	p := *base
	p.Args = o.Args
	p.Terminal = o.Terminal
	p.ConsoleSize = nil
	p.Env = mergeEnv(base.Env, o.Env)
	if o.User != nil {
		p.User = *o.User
	}
	if o.Cwd != "" {
		p.Cwd = o.Cwd
	}
	if o.NoNewPrivileges {
		p.NoNewPrivileges = true
	}
	if o.Scheduler != nil {
		p.Scheduler = o.Scheduler
	}
	if o.IOPriority != nil {
		p.IOPriority = o.IOPriority
	}
	if len(o.Capabilities) > 0 {
		c := specs.LinuxCapabilities{}
		if base.Capabilities != nil {
			c = *base.Capabilities
		}
		add := func(set []string) []string { return append(append([]string{}, set...), o.Capabilities...) }
		c.Bounding, c.Effective, c.Permitted, c.Ambient = add(c.Bounding), add(c.Effective), add(c.Permitted), add(c.Ambient)
		p.Capabilities = &c
	}
	if !hasEnv(p.Env, "HOME") {
		// Resolved in the container's /etc/passwd by the exec stage.
		p.Env = append(p.Env, "HOME=")
	}
	return &p
}

// mergeEnv returns base with each KEY=VALUE of over replacing base's KEY.
func mergeEnv(base, over []string) []string {
	out := append([]string{}, base...)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, e := range out {
			if ek, _, _ := strings.Cut(e, "="); ek == k {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// containerNS is the open namespaces of a container's init that differ
// from ours: join (as /proc/self/fd paths) for startIn, mnt (-1: shared).
type containerNS struct {
	fds  []int
	join []nsJoin
	mnt  int
}

func (n *containerNS) close() {
	for _, fd := range n.fds {
		unix.Close(fd)
	}
}

func openContainerNamespaces(pid int) (*containerNS, error) {
	n := &containerNS{mnt: -1}
	for _, x := range []struct {
		name string
		flag int
	}{
		{"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"net", unix.CLONE_NEWNET},
		{"pid", unix.CLONE_NEWPID}, {"cgroup", unix.CLONE_NEWCGROUP}, {"mnt", unix.CLONE_NEWNS},
	} {
		var mine, theirs unix.Stat_t
		path := "/proc/" + strconv.Itoa(pid) + "/ns/" + x.name
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			n.close()
			if errors.Is(err, unix.ENOENT) && x.name == "cgroup" {
				continue // kernel without cgroup namespaces
			}
			return nil, fmt.Errorf("open namespace %s: %w", path, err)
		}
		if err := unix.Fstat(fd, &theirs); err != nil {
			unix.Close(fd)
			n.close()
			return nil, os.NewSyscallError("fstat "+path, err)
		}
		if unix.Stat("/proc/self/ns/"+x.name, &mine) == nil && mine.Dev == theirs.Dev && mine.Ino == theirs.Ino {
			unix.Close(fd)
			continue // shared with the host: nothing to join
		}
		n.fds = append(n.fds, fd)
		if x.flag == unix.CLONE_NEWNS {
			n.mnt = fd
		} else {
			n.join = append(n.join, nsJoin{Flag: x.flag, Path: "/proc/self/fd/" + strconv.Itoa(fd)})
		}
	}
	return n, nil
}

// joinCgroup moves pid into the cgroup directories in paths (every
// hierarchy the container uses).
func joinCgroup(paths map[string]string, pid int) error {
	done := map[string]bool{}
	for _, dir := range paths {
		if done[dir] {
			continue
		}
		done[dir] = true
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("adding pid %d to cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

// subCgroupPaths is the container's cgroup directories (paths: controller
// name, or "" for the v2 hierarchy, to directory) with sub's relative
// paths applied, as runc exec --cgroup applies them: sub[""] to every
// hierarchy, else each named controller's path to its own. A path that
// leaves the container's cgroup, or a controller that paths lacks, is an
// error. Without sub, paths itself.
func subCgroupPaths(paths, sub map[string]string) (map[string]string, error) {
	if len(sub) == 0 {
		return paths, nil
	}
	join := func(dir, rel string) (string, error) {
		p := path.Join(dir, rel)
		if p != dir && !strings.HasPrefix(p, dir+"/") {
			return "", fmt.Errorf("--cgroup %s: %s is not a sub cgroup path", rel, rel)
		}
		return p, nil
	}
	out := make(map[string]string, len(paths))
	for k, dir := range paths {
		out[k] = dir
	}
	if rel, ok := sub[""]; ok {
		if len(sub) > 1 {
			return nil, fmt.Errorf("--cgroup %s: a path for every controller excludes controller:path pairs", rel)
		}
		for k, dir := range paths {
			p, err := join(dir, rel)
			if err != nil {
				return nil, err
			}
			out[k] = p
		}
		return out, nil
	}
	for ctrl, rel := range sub {
		dir, ok := paths[ctrl]
		if !ok {
			return nil, fmt.Errorf("--cgroup %s:%s: unknown controller %s (the container has no cgroup for it)", ctrl, rel, ctrl)
		}
		p, err := join(dir, rel)
		if err != nil {
			return nil, err
		}
		out[ctrl] = p
	}
	return out, nil
}

// readExecResult reads what the exec stage sends until it closes the socket
// (its exec closes it): an error message, and with a terminal the pty
// master as SCM_RIGHTS. It gives up when ctx ends or the stage dies.
func readExecResult(ctx context.Context, sock, pidfd int) (string, *os.File, error) {
	var msg []byte
	var console *os.File
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		i, err := waitFds(ctx, sock, pidfd)
		if err != nil {
			return "", console, err
		}
		if i == 1 {
			// Exited: read what is left without blocking.
			if err := unix.SetNonblock(sock, true); err != nil {
				return "", console, err
			}
		}
		n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			if len(msg) == 0 {
				return "", console, errors.New("the process exited during setup")
			}
			n, err = 0, nil
		}
		if err != nil {
			return "", console, os.NewSyscallError("recvmsg", err)
		}
		if oobn > 0 {
			f, err := consoleFromOOB(oob[:oobn])
			if err != nil {
				return "", console, err
			}
			console = f
		}
		if n == 0 && oobn == 0 {
			var m message
			if msg = bytes.TrimSpace(msg); len(msg) > 0 {
				if err := json.Unmarshal(msg, &m); err != nil {
					return "", console, fmt.Errorf("unreadable message from the exec'd process: %q", msg)
				}
			}
			return m.Error, console, nil
		}
		msg = append(msg, buf[:n]...)
	}
}

// recvConsole takes the terminal master the init sent on sock (at once:
// it was sent before the init's ready message).
func recvConsole(sock *os.File) (*os.File, error) {
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4))
	var oobn int
	err := retryEINTR(func() (err error) {
		_, oobn, _, _, err = unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
		return err
	})
	if err != nil {
		return nil, os.NewSyscallError("recvmsg", err)
	}
	if oobn == 0 {
		return nil, errors.New("the container init sent no terminal")
	}
	return consoleFromOOB(oob[:oobn])
}

func consoleFromOOB(oob []byte) (*os.File, error) {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, os.NewSyscallError("parse control message", err)
	}
	for _, c := range cmsgs {
		fds, err := unix.ParseUnixRights(&c)
		if err != nil {
			continue
		}
		for _, fd := range fds[1:] {
			unix.Close(fd)
		}
		if len(fds) > 0 {
			return os.NewFile(uintptr(fds[0]), "console"), nil
		}
	}
	return nil, errors.New("no file descriptor in the control message")
}

// Signal sends sig to the process.
func (p *ExecProcess) Signal(sig unix.Signal) error {
	if p.pidfd < 0 {
		return errGone
	}
	return signalPidfd(p.pidfd, sig)
}

// Wait waits for the process to exit, reaps it and forgets its record.
// When ctx ends first it returns ctx's cause and the process runs on.
func (p *ExecProcess) Wait(ctx context.Context) (ExitStatus, error) {
	if p.pidfd >= 0 {
		if _, err := waitFds(ctx, p.pidfd); err != nil {
			return ExitStatus{}, err
		}
	}
	var ws unix.WaitStatus
	err := retryEINTR(func() error { _, err := unix.Wait4(p.Pid, &ws, 0, nil); return err })
	p.release()
	if err != nil {
		return ExitStatus{}, os.NewSyscallError("wait4", err)
	}
	if ws.Signaled() {
		return ExitStatus{Code: 128 + int(ws.Signal()), Signal: unix.SignalName(ws.Signal())}, nil
	}
	return ExitStatus{Code: ws.ExitStatus()}, nil
}

func (p *ExecProcess) release() {
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	if p.record != "" {
		os.Remove(p.record)
		p.record = ""
	}
}

// abandon kills and reaps a process whose setup failed.
func (p *ExecProcess) abandon() {
	unix.Kill(p.Pid, unix.SIGKILL)
	var ws unix.WaitStatus
	retryEINTR(func() error { _, err := unix.Wait4(p.Pid, &ws, 0, nil); return err })
	if p.Console != nil {
		p.Console.Close()
	}
	p.release()
}

// runExec is the exec stage: in the container's namespaces (but the mount
// namespace) and cgroup already, it joins the mount namespace, sets the
// process up like the init does and execs the command. It never returns.
func runExec() {
	extra, _ := strconv.Atoi(os.Getenv(execExtraEnv))
	os.Unsetenv(execExtraEnv)
	sock := os.NewFile(uintptr(3+extra), "sync")
	logf := stageLogger(execLogEnv)
	err := execInside(sock, extra, logf)
	sendMessage(sock, message{Error: err.Error()})
	os.Exit(1)
}

// execInside has the sync socket at 3+extra and the extra files on 3, 4,
// ...; the container's mount namespace follows the socket. logf logs a
// debug line to the caller.
func execInside(sock *os.File, extra int, logf func(string)) error {
	mntFd := 4 + extra
	logf("child process in init(): the exec stage reads its config")
	var cfg execConfig
	if err := json.NewDecoder(sock).Decode(&cfg); err != nil {
		return fmt.Errorf("read exec config: %w", err)
	}
	p := cfg.Process
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return os.NewSyscallError("stat /proc/self/exe", err)
	}
	exeDev, exeIno := st.Dev, st.Ino
	last, err := lastCap()
	if err != nil {
		return fmt.Errorf("read cap_last_cap: %w", err)
	}
	if cfg.JoinMount {
		// setns(CLONE_NEWNS) refuses a thread that shares its fs_struct
		// (root, cwd) with others: this one (locked in init) gets its own.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return os.NewSyscallError("unshare(CLONE_FS)", err)
		}
		if err := unix.Setns(mntFd, unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("join the container's mount namespace: %w", os.NewSyscallError("setns", err))
		}
		unix.Close(mntFd)
	}
	slave := -1
	if p.Terminal {
		if slave, err = openConsole(int(sock.Fd())); err != nil {
			return err
		}
	}
	if err := chdirInside(p.Cwd); err != nil {
		return err
	}
	env := p.Env
	for i, e := range env {
		if e == "HOME=" {
			env[i] = "HOME=" + homeDir(int(p.User.UID))
		}
	}
	for _, r := range p.Rlimits {
		rl := unix.Rlimit{Cur: r.Soft, Max: r.Hard}
		n, ok := rlimitNames[r.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit %q", r.Type)
		}
		if err := unix.Prlimit(0, n, &rl, nil); err != nil {
			return fmt.Errorf("set %s: %w", r.Type, os.NewSyscallError("prlimit", err))
		}
	}
	// Its own session and process group, as runc's exec'd processes
	// have (the terminal, if any, becomes the session's).
	if _, err := unix.Setsid(); err != nil {
		return os.NewSyscallError("setsid", err)
	}
	if slave >= 0 {
		if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
			return os.NewSyscallError("ioctl(TIOCSCTTY)", err)
		}
		if err := unix.Fchown(slave, int(p.User.UID), -1); err != nil {
			return os.NewSyscallError("fchown terminal", err)
		}
		for fd := 0; fd <= 2; fd++ {
			if err := unix.Dup3(slave, fd, 0); err != nil {
				return os.NewSyscallError("dup3", err)
			}
		}
		unix.Close(slave)
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return os.NewSyscallError("prctl(PR_SET_NO_NEW_PRIVS)", err)
		}
	}
	late, err := installEarly(cfg.Seccomp, p.NoNewPrivileges)
	if err != nil {
		return err
	}
	if err := finalizeUser(p, last); err != nil {
		return err
	}
	if cfg.ProbeServerFd > 0 {
		if late != nil {
			if err := late.Install(); err != nil {
				return err
			}
		}
		if err := closeExtraFds(); err != nil {
			return err
		}
		// Success closes the socket (close-on-exec): the caller reads EOF.
		return waiter.ExecProbeServer(cfg.ProbeServerFd, env)
	}
	path, err := lookPath(p.Args[0], env)
	if err != nil {
		return err
	}
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Dev == exeDev && st.Ino == exeIno {
		return fmt.Errorf("refusing to run the runtime's own binary (%s) in the container", p.Args[0])
	}
	if late != nil {
		if err := late.Install(); err != nil {
			return err
		}
	}
	if err := closeExtraFds(); err != nil {
		return err
	}
	if err := keepExtraFds(extra); err != nil {
		return err
	}
	logf("setns_init: about to exec " + path)
	// Success closes the socket (close-on-exec): the caller reads EOF.
	err = unix.Exec(path, p.Args, env)
	return fmt.Errorf("exec %s: %w", p.Args[0], err)
}

// openConsole opens a new pseudo-terminal on the container's devpts (its
// /dev/pts/ptmx), sends the master to the caller over sock and returns the
// slave. The slave is taken with TIOCGPTPEER, not by path, so nothing in
// the container can swap it.
func openConsole(sock int) (int, error) {
	master, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the container's /dev/pts/ptmx (a terminal needs devpts on /dev/pts): %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return -1, os.NewSyscallError("ioctl(TIOCSPTLCK)", err)
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
	if errno != 0 {
		return -1, os.NewSyscallError("ioctl(TIOCGPTPEER)", errno)
	}
	slave := int(r)
	// One byte of data carries the fd on a stream socket; the caller
	// ignores whitespace.
	if err := unix.Sendmsg(sock, []byte{' '}, unix.UnixRights(master), nil, 0); err != nil {
		unix.Close(slave)
		return -1, os.NewSyscallError("send terminal", err)
	}
	return slave, nil
}
