package executor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/internal/rootfs"
	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/seccomp"
	"reconciled.dev/reconciled/internal/specwarm"
)

// runInit is the init stage, running as the container's first process in
// its new namespaces, on the main OS thread (locked in init()). It prepares
// everything, reports ready and waits on the exec fifo for start; then it
// execs the user process. It never returns.
func runInit() {
	// No collection during setup (the heap stays small); the waiting
	// process then frees everything and keeps a low target.
	debug.SetGCPercent(-1)
	if os.Getenv(spareEnv) == "1" {
		os.Unsetenv(spareEnv)
		warmDecoder()
	}
	sock := os.NewFile(3, "sync")
	cfg, stateDirFd, err := prepareInit(sock)
	if err != nil {
		sendMessage(sock, message{Error: err.Error()})
		os.Exit(1)
	}
	path, argv, env, err := cfg.exec()
	if err == nil {
		path, argv, err = setupInit(cfg.Spec, path, argv)
	}
	if err != nil {
		sendMessage(sock, message{Error: err.Error()})
		os.Exit(1)
	}
	var startHooks []specs.Hook
	var hookState []byte
	if h := cfg.Spec.Hooks; h != nil && len(h.StartContainer) > 0 {
		startHooks, hookState = h.StartContainer, cfg.hookState(StatusCreated)
	}
	// With no_new_privs the filter goes in as late as it can (runc: "as
	// close to execve as possible", so that a profile need allow only
	// what follows: write, close, openat, execve): here, before "ready"
	// so that a failure is still reported, and, with startContainer
	// hooks, once start came, before them: they run in the container, as
	// runc runs them, under its filter (runc's seccomp.bats checks that
	// a hook's denied call fails).
	lateFilter := cfg.lateFilter
	extra := cfg.extraFds
	cfg = nil // the spec is garbage from here: the waiting process keeps only what the exec needs
	if lateFilter != nil && len(startHooks) == 0 {
		if err := lateFilter.Install(); err != nil {
			sendMessage(sock, message{Error: err.Error()})
			os.Exit(1)
		}
		lateFilter = nil
	}
	if err := sendMessage(sock, message{Ready: true}); err != nil {
		os.Exit(1)
	}
	sock.Close()
	if err := placeExtraFds(extra); err != nil {
		os.Exit(1) // start finds the init gone (its pidfd)
	}
	// Wait as the waiter (executor/waiter): a few KiB of machine code
	// instead of a Go runtime holding about 1.5 MiB. startContainer hooks
	// need Go, so with them the init waits itself, as it does when the
	// waiter cannot be started; so it does with extra files (the waiter
	// keeps the state directory on fd 3).
	if len(startHooks) == 0 && len(extra) == 0 && waiter.Available() {
		_ = execWaiter(stateDirFd, path, argv, env) // returns only on failure
	}
	debug.SetGCPercent(20)
	debug.FreeOSMemory()

	// Block until start opens the fifo for reading. The state directory
	// was opened (O_PATH) before pivot_root, where the fifo's path no
	// longer resolves; it is closed at once and never reaches the exec.
	var w int
	err = retryEINTR(func() (err error) {
		w, err = unix.Openat(stateDirFd, fifoFile, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		return err
	})
	unix.Close(stateDirFd)
	if err != nil {
		os.Exit(1)
	}
	fail := func(err error) {
		unix.Write(w, []byte(err.Error()))
		os.Exit(1)
	}
	if lateFilter != nil {
		if err := lateFilter.Install(); err != nil {
			fail(err)
		}
	}
	if len(startHooks) > 0 {
		if err := runHooks(context.Background(), "startContainer", startHooks, hookState); err != nil {
			fail(err)
		}
	}
	if err := closeExtraFds(); err != nil {
		fail(err)
	}
	if err := keepExtraFds(len(extra)); err != nil {
		fail(err)
	}
	// Success closes w (close-on-exec): start reads EOF with no message.
	err = execProcess(path, argv, env)
	fail(fmt.Errorf("exec %s: %w", argv[0], err))
}

// execWaiter replaces the init with the waiter, which opens the exec fifo
// under fd 3 (the state directory) and then execs path. Everything the init
// set up (namespaces, root, credentials, capabilities, rlimits,
// no_new_privs, umask) carries over. It returns only when that could not be
// done, having undone what it changed, so the Go init can wait instead.
func execWaiter(stateDirFd int, path string, argv, env []string) error {
	if _, err := unix.FcntlInt(3, unix.F_GETFD, 0); err == nil {
		return errors.New("waiter: fd 3 is in use")
	}
	if err := unix.Dup3(stateDirFd, 3, 0); err != nil {
		return os.NewSyscallError("dup3", err)
	}
	mfd, err := waiter.Memfd()
	if err != nil {
		unix.Close(3)
		return err
	}
	undo := func(err error) error {
		unix.Close(mfd)
		unix.Close(3)
		return err
	}
	if err := closeExtraFds(); err != nil {
		return undo(err)
	}
	if _, err := unix.FcntlInt(3, unix.F_SETFD, 0); err != nil {
		return undo(os.NewSyscallError("fcntl", err))
	}
	if err := passInitFd(path, argv); err != nil {
		return undo(err)
	}
	// Through /proc when the container has one, so that syscall.Exec gives
	// back the RLIMIT_NOFILE the Go runtime raised at start (as the Go
	// init's own exec would); by the fd otherwise.
	err = syscall.Exec("/proc/self/fd/"+strconv.Itoa(mfd), append([]string{path}, argv...), env)
	err = errors.Join(err, waiter.Exec(mfd, path, argv, env))
	return undo(err)
}

type initState struct {
	initConfig
	exeDev, exeIno uint64
	path           string // the resolved executable
	env            []string
	// lateFilter is the seccomp filter still to install (with
	// no_new_privs: runInit does it last).
	lateFilter *seccomp.Program
	// extraFds are where the extra files (CreateOptions.ExtraFiles) are:
	// 3+i, or above while the sync socket holds 3.
	extraFds []int
}

func (c *initState) hookState(s Status) []byte {
	data, _ := json.Marshal(specs.State{
		Version: specs.Version, ID: c.ID, Status: specs.ContainerState(s), Pid: c.HostPid,
		Bundle: c.Bundle, Annotations: c.Spec.Annotations,
	})
	return data
}

func (c *initState) exec() (string, []string, []string, error) {
	return c.path, c.Spec.Process.Args, c.env, nil
}

// prepareInit does everything between the clone and "ready". It returns an
// O_PATH fd of the state directory, for opening the exec fifo.
func prepareInit(sock *os.File) (*initState, int, error) {
	extra, outside, err := recvStdio(int(sock.Fd()))
	if err != nil {
		return nil, -1, err
	}
	var c initState
	c.extraFds = extra
	dec := json.NewDecoder(bufio.NewReaderSize(sock, 4096))
	if err := dec.Decode(&c.initConfig); err != nil {
		return nil, -1, fmt.Errorf("init: read config: %w", err)
	}
	// With a user namespace the creator sent the state directory, the
	// rootfs and the bind mounts (userns.go): root here may not even
	// reach them on the host.
	var pre *rootfs.Prepared
	if c.Prepared != nil {
		if len(outside) < 2 {
			return nil, -1, fmt.Errorf("init: %d files from the creator, want the state directory and the rootfs", len(outside))
		}
		files := make([]*os.File, len(outside))
		for i, fd := range outside {
			files[i] = os.NewFile(uintptr(fd), "prepared")
		}
		if pre, err = rootfs.FromFiles(files[1:], c.Prepared.Binds); err != nil {
			return nil, -1, err
		}
		defer pre.Close() // what was not attached: the rootfs's fd
		outside = outside[:1]
	} else if len(outside) > 0 {
		return nil, -1, fmt.Errorf("init: %d unexpected files from the creator", len(outside))
	}
	consoleSock := -1
	if c.Console {
		if len(c.extraFds) == 0 {
			return nil, -1, errors.New("init: a terminal was asked for and no socket to send it on came")
		}
		consoleSock, c.extraFds = c.extraFds[len(c.extraFds)-1], c.extraFds[:len(c.extraFds)-1]
		defer unix.Close(consoleSock)
	}
	s := c.Spec
	p := s.Process
	// Our own binary, to refuse it as the container's entrypoint.
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return nil, -1, os.NewSyscallError("stat /proc/self/exe", err)
	}
	c.exeDev, c.exeIno = st.Dev, st.Ino

	last, err := lastCap() // the container may have no /proc
	if err != nil {
		return nil, -1, fmt.Errorf("read cap_last_cap: %w", err)
	}
	var dirFd int
	if len(outside) > 0 {
		dirFd = outside[0]
	} else if dirFd, err = unix.Open(c.StateDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		return nil, -1, fmt.Errorf("open state directory: %w", err)
	}
	// Nothing changes before the creator says go: it first puts this
	// process in its cgroup and runs the createRuntime hooks.
	var goAhead message
	if err := dec.Decode(&goAhead); err != nil || !goAhead.Ready {
		unix.Close(dirFd)
		return nil, -1, fmt.Errorf("init: no go from the creator: %v", err)
	}
	// Without prestart and createRuntime hooks "go" comes before the
	// creator has put this process in its cgroup: the setup that does not
	// depend on the cgroup runs meanwhile, and joinCgroup waits for the
	// "placed" message where it matters (before createContainer hooks and
	// the first cgroup mount, at the latest after the rootfs).
	placed, joined := goAhead.Placed, false
	joinCgroup := func() error {
		if joined {
			return nil
		}
		if !placed {
			var m message
			if err := dec.Decode(&m); err != nil {
				return fmt.Errorf("init: wait to be placed in the cgroup: %w", err)
			}
			if m.Error != "" || !m.Placed {
				return fmt.Errorf("init: not placed in the cgroup: %s", m.Error)
			}
			placed = true
		}
		joined = true
		if c.NS.has(unix.CLONE_NEWCGROUP) {
			if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
				return os.NewSyscallError("unshare(CLONE_NEWCGROUP)", err)
			}
		}
		return nil
	}
	for _, j := range c.NS.Join {
		if j.Flag == unix.CLONE_NEWNS {
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return nil, -1, os.NewSyscallError("unshare(CLONE_FS)", err)
			}
			if err := setnsPath(j); err != nil {
				return nil, -1, err
			}
		}
	}
	if err := setupNamespaces(s, c.NS); err != nil {
		return nil, -1, err
	}
	if h := s.Hooks; h != nil && len(h.CreateContainer) > 0 {
		if err := joinCgroup(); err != nil {
			return nil, -1, err
		}
		if err := runHooks(context.Background(), "createContainer", h.CreateContainer, c.hookState(StatusCreating)); err != nil {
			return nil, -1, err
		}
	}
	if pre != nil {
		if err := rootfs.SetupPrepared(s, c.Bundle, joinCgroup, pre); err != nil {
			return nil, -1, err
		}
	} else if c.NS.has(unix.CLONE_NEWNS) || joins(c.NS, unix.CLONE_NEWNS) {
		// A joined mount namespace gets the root and the mounts too, as
		// runc does them there (validateSpec refuses the runtime's own).
		if err := rootfs.SetupWith(s, c.Bundle, joinCgroup); err != nil {
			return nil, -1, err
		}
	}
	if err := joinCgroup(); err != nil {
		return nil, -1, err
	}
	if consoleSock >= 0 {
		if err := setupConsole(consoleSock, int(p.User.UID)); err != nil {
			return nil, -1, err
		}
	}
	if err := chdirInside(p.Cwd); err != nil {
		return nil, -1, err
	}
	c.env = p.Env
	if !hasEnv(c.env, "HOME") {
		c.env = append(c.env, "HOME="+homeDir(int(p.User.UID)))
	}
	for _, r := range p.Rlimits {
		rl := unix.Rlimit{Cur: r.Soft, Max: r.Hard}
		if err := unix.Prlimit(0, rlimitNames[r.Type], &rl, nil); err != nil {
			return nil, -1, fmt.Errorf("set %s: %w", r.Type, os.NewSyscallError("prlimit", err))
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return nil, -1, os.NewSyscallError("prctl(PR_SET_NO_NEW_PRIVS)", err)
		}
	}
	if c.lateFilter, err = installEarly(c.Seccomp, p.NoNewPrivileges); err != nil {
		return nil, -1, err
	}
	if err := finalizeUser(p, last); err != nil {
		return nil, -1, err
	}
	if c.path, err = lookPath(p.Args[0], c.env); err != nil {
		return nil, -1, err
	}
	if err := unix.Stat(c.path, &st); err != nil {
		return nil, -1, fmt.Errorf("stat %s: %w", c.path, err)
	}
	if st.Dev == c.exeDev && st.Ino == c.exeIno {
		return nil, -1, fmt.Errorf("refusing to run the runtime's own binary (%s) as the container process", p.Args[0])
	}
	return &c, dirFd, nil
}

// setupNamespaces does what the spec asks of the container's network, UTS
// and IPC namespaces, from a thread in them (the Go init's, or the
// creator's for the runner init): lo up in a new network namespace, the
// hostname and domainname, the sysctls.
func setupNamespaces(s *specs.Spec, ns nsPlan) error {
	if ns.has(unix.CLONE_NEWNET) {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("bring up lo: %w", err)
		}
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return os.NewSyscallError("sethostname", err)
		}
	}
	if s.Domainname != "" {
		if err := unix.Setdomainname([]byte(s.Domainname)); err != nil {
			return os.NewSyscallError("setdomainname", err)
		}
	}
	if s.Linux != nil {
		for k, v := range s.Linux.Sysctl {
			if err := writeSysctl(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// setupConsole gives the init a terminal as runc's init does: a
// pseudo-terminal opened on the container's devpts (the root is set up),
// its master sent on sock, its slave the controlling terminal of a new
// session and fds 0-2, owned by uid (its group is devpts' gid= option),
// with ONLCR cleared so that output reads as through a pipe.
func setupConsole(sock, uid int) error {
	slave, err := openConsole(sock)
	if err != nil {
		return fmt.Errorf("init: terminal: %w", err)
	}
	defer unix.Close(slave)
	t, err := unix.IoctlGetTermios(slave, unix.TCGETS)
	if err != nil {
		return os.NewSyscallError("ioctl(TCGETS)", err)
	}
	t.Oflag &^= unix.ONLCR
	if err := unix.IoctlSetTermios(slave, unix.TCSETS, t); err != nil {
		return os.NewSyscallError("ioctl(TCSETS)", err)
	}
	if err := unix.Fchown(slave, uid, -1); err != nil {
		return os.NewSyscallError("fchown terminal", err)
	}
	if _, err := unix.Setsid(); err != nil {
		return os.NewSyscallError("setsid", err)
	}
	if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
		return os.NewSyscallError("ioctl(TIOCSCTTY)", err)
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return os.NewSyscallError("dup3", err)
		}
	}
	return nil
}

// warmJSON is an init configuration around specwarm's spec, for
// warmDecoder.
const warmJSON = `{"id":"w","bundle":"/","stateDir":"/","hostPid":1,"ns":{"new":1},"spec":` + specwarm.JSON + `}`

// warmDecoder decodes warmJSON once, so that encoding/json has the field
// tables of every spec type ready when the real configuration comes: in a
// fresh process decoding a spec costs about 2 ms, most of it building
// them. A spare init does it while it waits.
func warmDecoder() {
	var c initConfig
	_ = json.Unmarshal([]byte(warmJSON), &c)
}

// recvStdio reads the one byte the creator sends with the container's fds
// 0-2, its extra files and the runtime's files for the init (SCM_RIGHTS;
// the byte counts the last) and puts them in place: stdio on 0-2, extra
// file i on 3+i (close-on-exec until the final exec), the runtime's files
// above them (returned second). Fd 3 is the sync socket still: what goes
// there waits at a higher number, which the returned slice holds
// (placeExtraFds moves it once the socket is closed). It comes first on
// the socket, before any buffered reader: a plain read would drop the fds.
func recvStdio(sock int) ([]int, []int, error) {
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace((3+MaxExtraFiles)*4))
	var n, oobn int
	err := retryEINTR(func() (err error) {
		n, oobn, _, _, err = unix.Recvmsg(sock, b[:], oob, unix.MSG_CMSG_CLOEXEC)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("init: receive stdio: %w", os.NewSyscallError("recvmsg", err))
	}
	if n != 1 {
		return nil, nil, errors.New("init: the creator went away before sending stdio")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, nil, fmt.Errorf("init: receive stdio: no fds (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, nil, fmt.Errorf("init: receive stdio: %w", err)
	}
	closeAll := func(fds []int) {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	nOutside := int(b[0])
	if len(fds) < 3+nOutside {
		closeAll(fds)
		return nil, nil, fmt.Errorf("init: receive stdio: %d fds, want at least %d", len(fds), 3+nOutside)
	}
	for i, fd := range fds[:3] {
		if err := unix.Dup3(fd, i, 0); err != nil {
			closeAll(fds)
			return nil, nil, fmt.Errorf("init: stdio: %w", os.NewSyscallError("dup3", err))
		}
	}
	closeAll(fds[:3])
	// The runtime's files go above every number an extra file takes.
	split := len(fds) - nOutside
	outside := make([]int, 0, nOutside)
	for _, fd := range fds[split:] {
		h, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, len(fds))
		unix.Close(fd)
		if err != nil {
			closeAll(outside)
			closeAll(fds[3:split])
			return nil, nil, fmt.Errorf("init: runtime fds: %w", os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", err))
		}
		outside = append(outside, h)
	}
	extra, err := takeExtraFds(fds[3:split])
	if err != nil {
		closeAll(outside)
		return nil, nil, err
	}
	return extra, outside, nil
}

// takeExtraFds puts the received descriptors fds (it closes them) on 3,
// 4, ..., but the one for fd 3 (the sync socket) above them. The numbers stay taken from now on, so that nothing the
// Go runtime opens later (its poller's descriptors) lands there.
func takeExtraFds(fds []int) ([]int, error) {
	if len(fds) == 0 {
		return nil, nil
	}
	// First all above the range, so that placing one cannot close another.
	high := make([]int, 0, len(fds))
	var dupErr error
	for _, fd := range fds {
		if dupErr == nil {
			h, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3+len(fds))
			if err != nil {
				dupErr = fmt.Errorf("init: extra fds: %w", os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", err))
			} else {
				high = append(high, h)
			}
		}
		unix.Close(fd)
	}
	fail := func(err error) ([]int, error) {
		for _, fd := range high {
			unix.Close(fd)
		}
		return nil, err
	}
	if dupErr != nil {
		return fail(dupErr)
	}
	for i, h := range high {
		want := 3 + i
		if want == 3 {
			continue // the sync socket: placeExtraFds, later
		}
		// Free: this runs first, and the Go runtime kept none of the
		// files it opened at start (see initGoDebug); an init with extra
		// files is never a spare, which opens files while it waits.
		if _, err := unix.FcntlInt(uintptr(want), unix.F_GETFD, 0); err == nil {
			l, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(want))
			return fail(fmt.Errorf("init: extra fds: fd %d is in use in the container init (%s)", want, l))
		}
		if err := unix.Dup3(h, want, unix.O_CLOEXEC); err != nil {
			return fail(fmt.Errorf("init: extra fds: %w", os.NewSyscallError("dup3", err)))
		}
		unix.Close(h)
		high[i] = want
	}
	return high, nil
}

// placeExtraFds moves the extra files still above their place (the one for
// fd 3, once the sync socket is closed) to it.
func placeExtraFds(fds []int) error {
	for i, fd := range fds {
		if fd == 3+i {
			continue
		}
		if err := unix.Dup3(fd, 3+i, unix.O_CLOEXEC); err != nil {
			return fmt.Errorf("extra fds: %w", os.NewSyscallError("dup3", err))
		}
		unix.Close(fd)
		fds[i] = 3 + i
	}
	return nil
}

// keepExtraFds clears close-on-exec on fds 3..3+n-1 (after closeExtraFds
// set it on everything): the extra files survive the final exec.
func keepExtraFds(n int) error {
	for fd := 3; fd < 3+n; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("extra fd %d: %w", fd, os.NewSyscallError("fcntl(F_SETFD)", err))
		}
	}
	return nil
}

// chdirInside changes to cwd, refusing anything that does not resolve to a
// directory inside the container's root (CVE-2024-21626: a cwd such as
// /proc/self/fd/N pointing at a leaked host directory).
func chdirInside(cwd string) error {
	fd, err := unix.Openat2(unix.AT_FDCWD, cwd, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("process.cwd %s: %w", cwd, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchdir(fd); err != nil {
		return fmt.Errorf("process.cwd %s: %w", cwd, os.NewSyscallError("fchdir", err))
	}
	wd, err := unix.Getwd()
	if err != nil || !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("process.cwd %s is outside the container's root", cwd)
	}
	return nil
}

// finalizeUser switches to the spec's user and leaves exactly the spec's
// capability sets: the bounding set is cut while we still have
// CAP_SETPCAP, the permitted set survives setuid through PR_SET_KEEPCAPS,
// then capset and the ambient set.
func finalizeUser(p *specs.Process, last uint) error {
	caps, err := parseCaps(p.Capabilities, last)
	if err != nil {
		return err
	}
	if err := dropBounding(caps.bounding, last); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_SET_KEEPCAPS)", err)
	}
	if err := setThreadCreds(p.User.UID, p.User.GID, p.User.AdditionalGids); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_SET_KEEPCAPS)", err)
	}
	if err := setCaps(caps, last); err != nil {
		return err
	}
	umask := 0o022
	if p.User.Umask != nil {
		umask = int(*p.User.Umask)
	}
	unix.Umask(umask)
	return nil
}

// setThreadCreds sets the supplementary groups, then the real, effective
// and saved GID and UID of the calling thread only, with raw system calls
// (as runc's init does). The init and the exec stage run on their locked
// main thread and exec from it, and an exec keeps only the calling thread;
// the other threads are the Go runtime's and run no code of the
// container. Go's Setresuid and its kind change every thread instead (by
// signalling each and waiting for it): about 0.2 ms of a container's
// create, for threads that are gone at the exec.
func setThreadCreds(uid, gid uint32, groups []uint32) error {
	var gp unsafe.Pointer
	if len(groups) > 0 {
		gp = unsafe.Pointer(&groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(gp), 0); e != 0 {
		return os.NewSyscallError("setgroups", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
		return os.NewSyscallError("setresgid", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
		return os.NewSyscallError("setresuid", e)
	}
	return nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			return true
		}
	}
	return false
}

// homeDir finds uid's home in the container's /etc/passwd, "/" if none.
func homeDir(uid int) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return "/"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 6 && fields[2] == strconv.Itoa(uid) && fields[5] != "" {
			return fields[5]
		}
	}
	return "/"
}

// lookPath resolves name against the container's PATH like execvp.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := isExecutable(name); err != nil {
			return "", fmt.Errorf("exec %s: %w", name, err)
		}
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if isExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %s: executable file not found in $PATH", name)
}

func isExecutable(p string) error {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return errors.New("is a directory")
	}
	return unix.Access(p, unix.X_OK)
}
