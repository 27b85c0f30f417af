package executor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/internal/rootfs"
	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/seccomp"
	"reconciled.dev/reconciled/internal/sys"
)

// The runner init: a container's init that is the setup runner
// (executor/waiter, setup_amd64.S) instead of this binary, so that no Go
// runtime starts in it. On a 2-core host the Go init's start, its decode
// of the configuration and the teardown of its runtime at the exec were
// half of the CPU a container's create cost.
//
// The work is split by who can do it. The creator does, from a thread of
// its own that joined the init's mount, UTS, IPC and network namespaces
// (and its cgroup namespace once the init made it): the loopback,
// hostname, sysctls, the root filesystem with pivot_root (internal/rootfs:
// pivot_root moves the init's root and cwd with the thread's), the
// masked and read-only paths, and the lookup of the executable as the
// container's user. The init runs what a process can only do to itself,
// as chunks of system calls the creator sends (waiter.Program): first it
// takes its stdio, opens the filesystem context of each procfs (a procfs
// shows the PID namespace of the process that opened its context: the
// thread is not in the container's) and sends them back, waits to be
// placed in its cgroup and unshares its cgroup namespace; then, once the
// thread is done, its working directory, rlimits, no_new_privs, seccomp,
// bounding set, groups, user and capabilities, umask, "ready", the exec
// fifo and the exec. Its errors come back as "what: errno NNN", and the
// exec's on the fifo as the waiter's.
//
// It is used where everything the spec asks for is one of those steps. A
// console, extra files, a user namespace, namespaces joined by path, a
// process or working directory under /proc, and hooks that run in the
// container or before it is set up (createContainer, startContainer,
// prestart, createRuntime) keep the Go init; so do a kernel older than
// 5.12 (openat2, close_range, setns with a pidfd, mount_setattr) and
// RECONCILED_GO_INIT=1 in the environment of the process that creates.

// GoInitEnv, set to 1 in the creator's environment, makes every container
// init the Go one (for comparing the two; see useRunner).
const GoInitEnv = "RECONCILED_GO_INIT"

// Tags the runner init writes on the sync socket, each 8 bytes. Anything
// else is its report of a failed call (waiter.ParseSetupError).
const (
	tagProc   = "RCLDPROC" // with the procfs contexts (SCM_RIGHTS)
	tagPlaced = "RCLDCGNS" // placed in its cgroup, cgroup namespace made
	tagReady  = "RCLDREDY" // set up: waits on the exec fifo
)

// Slots of the runner init's programs.
const (
	slotState   = waiter.FirstSlot     // the state directory
	slotInit    = waiter.FirstSlot + 1 // the init's memfd (init: true)
	slotScratch = waiter.FirstSlot + 2
	procFdBase  = 200 // where the procfs contexts are put to be sent
)

// runnerKernel reports whether the kernel has what the runner init needs.
var runnerKernel = sync.OnceValue(func() bool {
	// close_range (5.9) implies openat2 (5.6) and setns with a pidfd (5.8).
	if err := unix.CloseRange(^uint(0), ^uint(0), 0); err != nil {
		return false
	}
	attr := unix.MountAttr{}
	if err := unix.MountSetattr(-1, "", 0, &attr); errors.Is(err, unix.ENOSYS) {
		return false
	}
	fd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
})

// useRunner reports whether the init of a container created with spec,
// plan and o is the runner init.
func (r *Runtime) useRunner(spec *specs.Spec, plan nsPlan, o CreateOptions) bool {
	if r.goInit || len(plan.Join) > 0 || !r.machineMonitor(plan) || !waiter.SetupAvailable() {
		return false
	}
	if o.Console != nil || len(o.ExtraFiles) > 0 {
		return false
	}
	//nolint:staticcheck // Prestart: deprecated, still supported
	if h := spec.Hooks; h != nil && (len(h.Prestart) > 0 || len(h.CreateRuntime) > 0 || len(h.CreateContainer) > 0 || len(h.StartContainer) > 0) {
		return false
	}
	// The thread that looks the executable up and checks the working
	// directory is not in the container's PID namespace: /proc/self
	// there is not the init's (the Go init refuses /proc/self/exe).
	if pr := spec.Process; strings.HasPrefix(path.Clean(pr.Args[0]), "/proc/") || strings.HasPrefix(path.Clean(pr.Cwd), "/proc/") {
		return false
	}
	return runnerKernel()
}

// runnerExe returns the setup runner's sealed memfd, made once per
// Runtime (launch hands it to the machine monitor as the init to exec).
func (r *Runtime) runnerExe() (*os.File, error) {
	return r.runner.get("setup runner", "reconciled-setup", waiter.SetupMemfd)
}

// initExe returns the init's sealed memfd (init: true), made once per
// Runtime, for the runner init to exec.
func (r *Runtime) initExe() (*os.File, error) {
	return r.initFd.get("init: true", "reconciled-init", waiter.InitMemfd)
}

// procMounts counts the procfs mounts of spec: the contexts the runner
// init opens.
func procMounts(spec *specs.Spec) int {
	n := 0
	for _, m := range spec.Mounts {
		if m.Type == "proc" {
			n++
		}
	}
	return n
}

// procContextChunk opens n procfs contexts and sends them back.
func procContextChunk(p *waiter.Program, n int) {
	fds := make([]int, n)
	for i := range fds {
		fds[i] = procFdBase + i
		p.Call("container init: open a procfs context: fsopen", unix.SYS_FSOPEN, p.String("proc"), waiter.Imm(unix.FSOPEN_CLOEXEC)).Into(slotScratch)
		p.Call("container init: open a procfs context: dup3", unix.SYS_DUP3, waiter.Slot(slotScratch), waiter.Int(fds[i]), waiter.Imm(unix.O_CLOEXEC))
		p.Call("container init: open a procfs context: close", unix.SYS_CLOSE, waiter.Slot(slotScratch))
	}
	iov := p.Zero(16)
	tag := p.String(tagProc)
	p.SetPointer(iov, 0, tag)
	binary.LittleEndian.PutUint64(p.Data(iov)[8:], uint64(len(tagProc)))
	rights := unix.UnixRights(fds...)
	control := p.Bytes(rights)
	msg := p.Zero(56)
	p.SetPointer(msg, 16, iov)
	binary.LittleEndian.PutUint64(p.Data(msg)[24:], 1)
	p.SetPointer(msg, 32, control)
	binary.LittleEndian.PutUint64(p.Data(msg)[40:], uint64(len(rights)))
	p.Call("container init: send the procfs contexts: sendmsg", unix.SYS_SENDMSG, waiter.Imm(3), msg, waiter.Imm(unix.MSG_NOSIGNAL)).Expect(uint64(len(tagProc)))
	for _, fd := range fds {
		p.Call("container init: close: close", unix.SYS_CLOSE, waiter.Int(fd))
	}
}

// openProcContexts has a spare's runner init open n procfs contexts ahead
// (a procfs shows the PID namespace of the process that opened its
// context: the spare's init is already in the container's) and keeps them
// for the create that takes the spare. Before that it joins the cgroups
// of the tasks files join (joinChunk) and, with tmpl, makes its mount
// namespace from the template (enterTemplate).
func (p *pair) openProcContexts(n int, tmpl *os.File, join ...string) error {
	var prog waiter.Program
	joinChunk(&prog, join)
	var fds []int
	if tmpl != nil {
		enterTemplate(&prog, 0)
		fds = []int{int(tmpl.Fd())}
	}
	procContextChunk(&prog, n)
	if err := sendChunk(p.sock, &prog, fds); err != nil {
		return err
	}
	fds, err := readTag(p.sock, tagProc, n)
	if err != nil {
		return err
	}
	p.procCtx = append(p.procCtx, fds...)
	p.inTemplate = tmpl != nil
	return nil
}

// joinChunk has the runner init join the v1 cgroups whose tasks files
// are tasks by writing 0 to each: the init is single-threaded, so it moves
// whole, and without the global lock a write of its PID would take
// (cgroups.SelfPlacer).
func joinChunk(p *waiter.Program, tasks []string) {
	for _, t := range tasks {
		p.Call("container init: join its cgroup: open "+t, unix.SYS_OPENAT, waiter.Int(unix.AT_FDCWD), p.String(t), waiter.Imm(unix.O_WRONLY|unix.O_CLOEXEC)).Into(slotScratch)
		p.Call("container init: join its cgroup: write 0 to "+t, unix.SYS_WRITE, waiter.Slot(slotScratch), p.String("0"), waiter.Imm(1)).Expect(1)
		p.Call("container init: join its cgroup: close", unix.SYS_CLOSE, waiter.Slot(slotScratch))
	}
}

// firstChunk is the runner init's first program: its stdio (fds 0-2 of
// the chunk), the state directory (3) and the init's memfd (4) kept, nProc
// procfs contexts opened and sent back, then it waits to be placed in its
// cgroup and makes its cgroup namespace; with joins, those last steps are
// a chunk of their own (placedChunk). With tmpl it makes its mount
// namespace from the template (the fd after the others: enterTemplate)
// before it sends the contexts, always, even none: the setup joins that
// namespace once they come. With chroot it makes the container's rootfs
// (the last fd: a detached tree the setup attaches over its namespace's
// root) its root, as pivot_root would have: before any seccomp filter,
// which may refuse chroot.
func firstChunk(nProc int, cgroupns, withInit, joins, tmpl, chroot bool) *waiter.Program {
	var p waiter.Program
	for i := 0; i < 3; i++ {
		p.Call("container init: take stdio: dup3", unix.SYS_DUP3, waiter.Slot(waiter.FdSlot(i)), waiter.Int(i), waiter.Imm(0))
	}
	p.Call("container init: keep the state directory: fcntl", unix.SYS_FCNTL, waiter.Slot(waiter.FdSlot(3)), waiter.Imm(unix.F_DUPFD_CLOEXEC), waiter.Imm(3)).Into(slotState)
	if withInit {
		p.Call("container init: keep the init: fcntl", unix.SYS_FCNTL, waiter.Slot(waiter.FdSlot(4)), waiter.Imm(unix.F_DUPFD_CLOEXEC), waiter.Imm(3)).Into(slotInit)
	}
	n := 4 // the fds sent
	if withInit {
		n = 5
	}
	for i := 0; i < n; i++ {
		p.Call("container init: close: close", unix.SYS_CLOSE, waiter.Slot(waiter.FdSlot(i)))
	}
	if tmpl {
		enterTemplate(&p, n)
		n++
	}
	if chroot {
		chrootChunk(&p, n)
	}
	if nProc > 0 || tmpl {
		procContextChunk(&p, nProc)
	}
	if joins {
		return &p
	}
	p.Call("container init: wait to be placed in the cgroup: read", unix.SYS_READ, waiter.Imm(3), p.Zero(8), waiter.Imm(1)).Expect(1)
	placed(&p, cgroupns)
	return &p
}

// placed ends the runner init's wait for its cgroup: its cgroup namespace
// made, "placed" said.
func placed(p *waiter.Program, cgroupns bool) {
	if cgroupns {
		p.Call("container init: unshare(CLONE_NEWCGROUP)", unix.SYS_UNSHARE, waiter.Imm(unix.CLONE_NEWCGROUP))
	}
	p.Call("container init: say placed: write", unix.SYS_WRITE, waiter.Imm(3), p.String(tagPlaced), waiter.Imm(uint64(len(tagPlaced)))).Expect(uint64(len(tagPlaced)))
}

// placedChunk has the runner init join its v1 cgroups (each of the n
// descriptors sent with the chunk a tasks file, opened by the creator: by
// then the setup thread may have changed the init's root) by writing 0 to
// each, then go on as firstChunk does once placed.
func placedChunk(n int, cgroupns bool) *waiter.Program {
	var p waiter.Program
	for i := 0; i < n; i++ {
		p.Call("container init: join its cgroup: write 0 to tasks", unix.SYS_WRITE, waiter.Slot(waiter.FdSlot(i)), p.String("0"), waiter.Imm(1)).Expect(1)
		p.Call("container init: join its cgroup: close", unix.SYS_CLOSE, waiter.Slot(waiter.FdSlot(i)))
	}
	placed(&p, cgroupns)
	return &p
}

// lastChunk is the runner init's second program: what runInit does on
// itself from the working directory on, in its order, then "ready", the
// exec fifo and the exec of path (or of the init's memfd with path).
func lastChunk(s *specs.Spec, path string, env []string, filter *seccomp.Program, last uint, withInit, filterIn bool) (*waiter.Program, error) {
	pr := s.Process
	caps, err := parseCaps(pr.Capabilities, last)
	if err != nil {
		return nil, err
	}
	var p waiter.Program
	le := binary.LittleEndian
	how := make([]byte, 24)
	le.PutUint64(how, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	le.PutUint64(how[16:], unix.RESOLVE_NO_MAGICLINKS)
	cwd := "process.cwd " + pr.Cwd
	p.Call(cwd, unix.SYS_OPENAT2, waiter.Int(unix.AT_FDCWD), p.String(pr.Cwd), p.Bytes(how), waiter.Imm(24)).Into(slotScratch)
	p.Call(cwd+": fchdir", unix.SYS_FCHDIR, waiter.Slot(slotScratch))
	p.Call(cwd+": close", unix.SYS_CLOSE, waiter.Slot(slotScratch))
	for _, rl := range pr.Rlimits {
		b := make([]byte, 16)
		le.PutUint64(b, rl.Soft)
		le.PutUint64(b[8:], rl.Hard)
		p.Call("set "+rl.Type+": prlimit", unix.SYS_PRLIMIT64, waiter.Imm(0), waiter.Imm(uint64(rlimitNames[rl.Type])), p.Bytes(b), waiter.Imm(0))
	}
	if filterIn {
		filter = nil // with no_new_privs, by the early chunk
	}
	if pr.NoNewPrivileges && !filterIn {
		p.Call("prctl(PR_SET_NO_NEW_PRIVS)", unix.SYS_PRCTL, waiter.Imm(unix.PR_SET_NO_NEW_PRIVS), waiter.Imm(1), waiter.Imm(0), waiter.Imm(0), waiter.Imm(0))
	}
	if filter != nil {
		if err := checkFilter(filter); err != nil {
			return nil, err
		}
		if !pr.NoNewPrivileges {
			addFilter(&p, filter) // runc's order: see installEarly
		}
	}
	for c := uint(0); c <= last; c++ {
		if caps.bounding&(1<<c) == 0 {
			p.Call("drop capability "+strconv.Itoa(int(c))+" from the bounding set: prctl", unix.SYS_PRCTL, waiter.Imm(unix.PR_CAPBSET_DROP), waiter.Imm(uint64(c)), waiter.Imm(0), waiter.Imm(0), waiter.Imm(0))
		}
	}
	p.Call("prctl(PR_SET_KEEPCAPS)", unix.SYS_PRCTL, waiter.Imm(unix.PR_SET_KEEPCAPS), waiter.Imm(1), waiter.Imm(0), waiter.Imm(0), waiter.Imm(0))
	groups := make([]byte, 4*len(pr.User.AdditionalGids)+4)
	for i, g := range pr.User.AdditionalGids {
		le.PutUint32(groups[4*i:], g)
	}
	p.Call("setgroups", unix.SYS_SETGROUPS, waiter.Imm(uint64(len(pr.User.AdditionalGids))), p.Bytes(groups))
	gid, uid := uint64(pr.User.GID), uint64(pr.User.UID)
	p.Call("setresgid", unix.SYS_SETRESGID, waiter.Imm(gid), waiter.Imm(gid), waiter.Imm(gid))
	p.Call("setresuid", unix.SYS_SETRESUID, waiter.Imm(uid), waiter.Imm(uid), waiter.Imm(uid))
	p.Call("prctl(PR_SET_KEEPCAPS)", unix.SYS_PRCTL, waiter.Imm(unix.PR_SET_KEEPCAPS), waiter.Imm(0), waiter.Imm(0), waiter.Imm(0), waiter.Imm(0))
	hdr := make([]byte, 8)
	le.PutUint32(hdr, unix.LINUX_CAPABILITY_VERSION_3)
	data := make([]byte, 24)
	for i, v := range []uint64{caps.effective, caps.permitted, caps.inheritable} {
		le.PutUint32(data[4*i:], uint32(v))
		le.PutUint32(data[12+4*i:], uint32(v>>32))
	}
	p.Call("capset", unix.SYS_CAPSET, p.Bytes(hdr), p.Bytes(data))
	p.Call("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", unix.SYS_PRCTL, waiter.Imm(unix.PR_CAP_AMBIENT), waiter.Imm(unix.PR_CAP_AMBIENT_CLEAR_ALL), waiter.Imm(0), waiter.Imm(0), waiter.Imm(0))
	for c := uint(0); c <= last; c++ {
		// As setCaps: only where permitted and inheritable.
		if bit := uint64(1) << c; caps.ambient&bit != 0 && caps.inheritable&bit != 0 && caps.permitted&bit != 0 {
			p.Call("raise ambient capability "+strconv.Itoa(int(c))+": prctl", unix.SYS_PRCTL, waiter.Imm(unix.PR_CAP_AMBIENT), waiter.Imm(unix.PR_CAP_AMBIENT_RAISE), waiter.Imm(uint64(c)), waiter.Imm(0), waiter.Imm(0))
		}
	}
	umask := uint64(0o022)
	if pr.User.Umask != nil {
		umask = uint64(*pr.User.Umask)
	}
	p.Call("umask", unix.SYS_UMASK, waiter.Imm(umask))
	if filter != nil && pr.NoNewPrivileges {
		addFilter(&p, filter) // as late as it can: see runInit
	}
	p.Call("container init: say ready: write", unix.SYS_WRITE, waiter.Imm(3), p.String(tagReady), waiter.Imm(uint64(len(tagReady)))).Expect(uint64(len(tagReady)))
	p.Call("close_range", unix.SYS_CLOSE_RANGE, waiter.Imm(3), waiter.Imm(uint64(^uint32(0))), waiter.Imm(unix.CLOSE_RANGE_CLOEXEC))
	p.Call("open the exec fifo", unix.SYS_OPENAT, waiter.Slot(slotState), p.String(fifoFile), waiter.Imm(unix.O_WRONLY|unix.O_CLOEXEC)).Into(waiter.ErrorSlot).Exit(126)
	p.Call("close the state directory", unix.SYS_CLOSE, waiter.Slot(slotState))
	// What the waiter writes when the exec fails (ops.go reads it).
	execFailed := waiter.ExecFailedPrefix[:len(waiter.ExecFailedPrefix)-len(": errno ")]
	if withInit {
		p.Call(execFailed, unix.SYS_EXECVEAT, waiter.Slot(slotInit), p.String(""), p.Strings(append([]string{path}, pr.Args...)), p.Strings(env), waiter.Imm(unix.AT_EMPTY_PATH)).Exit(127)
	} else {
		p.Call(execFailed, unix.SYS_EXECVE, p.String(path), p.Strings(pr.Args), p.Strings(env)).Exit(127)
	}
	return &p, nil
}

// checkFilter refuses a program seccomp(2) cannot take.
func checkFilter(filter *seccomp.Program) error {
	if n := filter.Len(); n == 0 || n > 0xffff || len(filter.Code)%8 != 0 {
		return fmt.Errorf("seccomp: bad program of %d bytes", len(filter.Code))
	}
	return nil
}

// addFilter adds to p the call that installs filter.
func addFilter(p *waiter.Program, filter *seccomp.Program) {
	fprog := p.Zero(16)
	binary.LittleEndian.PutUint16(p.Data(fprog), uint16(filter.Len()))
	p.SetPointer(fprog, 8, p.Bytes(filter.Code))
	p.Call("install the seccomp filter: seccomp", unix.SYS_SECCOMP, waiter.Imm(unix.SECCOMP_SET_MODE_FILTER), waiter.Imm(uint64(filter.Flags)), fprog)
}

// lateCalls are the system calls the runner init makes after the early
// chunk: the last chunk's, and its own between chunks (the chunk's
// mapping, the socket, an error report).
var lateCalls = []uint32{
	unix.SYS_MUNMAP, unix.SYS_RECVMSG, unix.SYS_READ, unix.SYS_MMAP, unix.SYS_WRITE, unix.SYS_EXIT_GROUP,
	unix.SYS_OPENAT2, unix.SYS_FCHDIR, unix.SYS_CLOSE, unix.SYS_PRLIMIT64, unix.SYS_PRCTL,
	unix.SYS_SETGROUPS, unix.SYS_SETRESGID, unix.SYS_SETRESUID, unix.SYS_CAPSET, unix.SYS_UMASK,
	unix.SYS_CLOSE_RANGE, unix.SYS_OPENAT, unix.SYS_EXECVE, unix.SYS_EXECVEAT,
}

// earlyChunk is the chunk that installs the container's seccomp filter
// (after no_new_privs where the spec asks for it) while the container is
// still being set up, or nil where it must wait for the last chunk.
//
// Installing a filter costs the kernel about 0.5 ms (Docker's default:
// 1,128 instructions, checked, converted and compiled), on the create's
// path when it is in the last chunk. It can go in first, beside the
// setup, when the filter lets every call the init makes after it through
// whatever their arguments (seccomp.AllowsAlways): those calls then do
// exactly what they would have done, and the container's process, which
// starts with the exec, is filtered the same. Any other filter (one that
// refuses, logs or checks the arguments of one of those calls) stays
// where runc puts it: before the exec with no_new_privs, else just after
// the rlimits.
func earlyChunk(s *specs.Spec, filter *seccomp.Program) *waiter.Program {
	if filter == nil || checkFilter(filter) != nil {
		return nil
	}
	for _, nr := range lateCalls {
		if !filter.AllowsAlways(nr) {
			return nil
		}
	}
	var p waiter.Program
	if s.Process.NoNewPrivileges {
		p.Call("prctl(PR_SET_NO_NEW_PRIVS)", unix.SYS_PRCTL, waiter.Imm(unix.PR_SET_NO_NEW_PRIVS), waiter.Imm(1), waiter.Imm(0), waiter.Imm(0), waiter.Imm(0))
	}
	addFilter(&p, filter)
	return &p
}

// runnerStart sends the runner init its first chunk with the container's
// stdio and starts setting the container up from a thread of this process
// (runnerSetup); the returned channel gives its result. The socket is the
// setup's to read until then.
func (c *creation) runnerStart(p *pair, plan nsPlan, bundle string, stdio [3]*os.File) (<-chan runnerResult, error) {
	// The monitor's last message (the init's PID) ends with a newline
	// that may still be buffered; nothing else may be.
	b, _ := io.ReadAll(p.dec.Buffered())
	rest, _ := p.rd.Peek(p.rd.Buffered())
	if len(strings.TrimSpace(string(b)+string(rest))) > 0 {
		return nil, fmt.Errorf("container init: unexpected data from the monitor: %q", append(b, rest...))
	}
	state, err := os.OpenFile(c.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open state directory: %w", err)
	}
	defer state.Close()
	fds := []int{int(stdio[0].Fd()), int(stdio[1].Fd()), int(stdio[2].Fd()), int(state.Fd())}
	withInit := wantsInit(c.spec)
	if withInit {
		mfd, err := c.r.initExe()
		if err != nil {
			return nil, err
		}
		fds = append(fds, int(mfd.Fd()))
	}
	// The procfs contexts a spare opened ahead count; the init opens
	// the rest.
	ahead := p.procCtx
	p.procCtx = nil
	nProc := procMounts(c.spec)
	for len(ahead) > nProc {
		unix.Close(ahead[len(ahead)-1])
		ahead = ahead[:len(ahead)-1]
	}
	// An init cloned into its cgroup2 directory joins its v1 cgroups
	// itself once they are made and set (placedChunk), where the driver
	// can have it: no PID written (cgroups.SelfPlacer). On a pure v2
	// host the clone placed it.
	if j, ok := c.cgroup.(joiner); ok && c.clonedIn && c.cgroupReady && len(j.JoinFiles()) > 0 && len(j.JoinFiles()) <= waiter.MaxFds {
		c.joins, c.cgroupns = true, plan.has(unix.CLONE_NEWCGROUP)
	}
	enter := p.template && !p.inTemplate
	if enter {
		ns := c.r.template()
		if ns == nil {
			for _, fd := range ahead {
				unix.Close(fd)
			}
			return nil, errors.New("no mount namespace template: the runtime is closed")
		}
		fds = append(fds, int(ns.Fd()))
	}
	var detached *rootfs.Prepared
	if p.template {
		// Cloned here, in the host's mount namespace: the container's
		// has none of its mounts.
		if detached, err = rootfs.PrepareDetached(c.spec, bundle); err != nil {
			for _, fd := range ahead {
				unix.Close(fd)
			}
			return nil, err
		}
		fds = append(fds, int(detached.Root.Fd()))
		c.r.log.Debug("the init's mount namespace is a copy of the template: the rootfs is attached over its root, no pivot_root", "container", c.id, "init", p.pid)
	}
	chunk := firstChunk(nProc-len(ahead), plan.has(unix.CLONE_NEWCGROUP), withInit, c.joins, enter, p.template)
	if err := sendChunk(p.sock, chunk, fds); err != nil {
		for _, fd := range ahead {
			unix.Close(fd)
		}
		detached.Close()
		return nil, err
	}
	done := make(chan runnerResult, 1)
	sys.GoOwnThread(func() { done <- c.runnerSetup(p, plan, bundle, ahead, nProc-len(ahead), enter, detached) })
	return done, nil
}

// runnerResult is what runnerSetup found: the executable and environment
// of the container's process, or why not (the init's own report first).
type runnerResult struct {
	path string
	env  []string
	err  error
}

// runnerSetup receives the procfs contexts the runner init opened and, in
// the init's namespaces, sets the container up as the Go init's
// prepareInit does up to its working directory. It runs on a thread of its
// own (sys.GoOwnThread), which it changes for good.
func (c *creation) runnerSetup(p *pair, plan nsPlan, bundle string, ahead []int, nProc int, entering bool, detached *rootfs.Prepared) (res runnerResult) {
	defer detached.Close()
	procFds := ahead
	defer func() {
		for _, fd := range procFds {
			if fd >= 0 { // -1: taken by its mount
				unix.Close(fd)
			}
		}
	}()
	if nProc > 0 || entering {
		fds, err := readTag(p.sock, tagProc, nProc)
		if err != nil {
			return runnerResult{err: err}
		}
		procFds = append(procFds, fds...)
	}
	s := c.spec
	pr := s.Process
	res.err = func() error {
		pidfd, err := unix.PidfdOpen(p.pid, 0)
		if err != nil {
			return fmt.Errorf("container init: %w", os.NewSyscallError("pidfd_open", err))
		}
		defer unix.Close(pidfd)
		if !proc.Running(p.pid, p.pidStart) {
			return errors.New("container init: exited")
		}
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return os.NewSyscallError("unshare(CLONE_FS)", err)
		}
		join := unix.CLONE_NEWNS | plan.New&(unix.CLONE_NEWUTS|unix.CLONE_NEWIPC|unix.CLONE_NEWNET)
		if p.template {
			join &^= unix.CLONE_NEWNS
		}
		if join != 0 {
			if err := unix.Setns(pidfd, join); err != nil {
				return fmt.Errorf("join the container init's namespaces: %w", os.NewSyscallError("setns", err))
			}
		}
		if err := setupNamespaces(s, plan); err != nil {
			return err
		}
		if p.template {
			if err := joinOwnMountNamespace(p.pid); err != nil {
				return err
			}
		}
		placed := false
		waitPlaced := func() error {
			if placed {
				return nil
			}
			placed = true
			if _, err := readTag(p.sock, tagPlaced, 0); err != nil {
				return err
			}
			if plan.has(unix.CLONE_NEWCGROUP) {
				if err := unix.Setns(pidfd, unix.CLONE_NEWCGROUP); err != nil {
					return fmt.Errorf("join the container's cgroup namespace: %w", os.NewSyscallError("setns", err))
				}
			}
			return nil
		}
		next := 0
		procContext := func() (int, error) {
			if next >= len(procFds) {
				return -1, errors.New("more procfs mounts than contexts")
			}
			fd := procFds[next]
			procFds[next] = -1 // the mount closes it
			next++
			return fd, nil
		}
		if err := rootfs.SetupOptions(s, bundle, rootfs.Options{
			BeforeCgroup: waitPlaced, ProcContext: procContext,
			Cgroups:  func() (map[string]string, error) { return proc.Cgroups(p.pid) },
			Detached: detached,
		}); err != nil {
			return err
		}

		if err := waitPlaced(); err != nil {
			return err
		}
		if err := chdirInside(pr.Cwd); err != nil {
			return err
		}
		res.env = pr.Env
		if !hasEnv(res.env, "HOME") {
			res.env = append(res.env, "HOME="+homeDir(int(pr.User.UID)))
		}
		// The executable is looked up as the container's user, as
		// the Go init does (after finalizeUser): this thread ends
		// with this function.
		if err := setThreadCreds(pr.User.UID, pr.User.GID, pr.User.AdditionalGids); err != nil {
			return err
		}
		if res.path, err = lookPath(pr.Args[0], res.env); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Stat(res.path, &st); err != nil {
			return fmt.Errorf("stat %s: %w", res.path, err)
		}
		if st.Dev == c.st.RuntimeExeDev && st.Ino == c.st.RuntimeExeIno {
			return fmt.Errorf("refusing to run the runtime's own binary (%s) as the container process", pr.Args[0])
		}
		return nil
	}()
	return res
}

// runnerPlaced tells the runner init it is in its cgroup (and sends it
// the seccomp filter now where it can go in early: earlyChunk), waits for
// the setup, sends the last chunk and waits for "ready"; sent, when not
// nil, runs between the last two (runnerFinish).
func (c *creation) runnerPlaced(p *pair, filter *seccomp.Program, sent func() error) error {
	if c.joins {
		if err := c.sendPlaced(p); err != nil {
			return p.runnerFailed(fmt.Errorf("release container init: %w", err))
		}
		c.r.log.Debug("the init joins its v1 cgroups itself (writes 0 to their tasks files)", "container", c.id, "init", p.pid)
	} else if _, err := p.sock.Write([]byte{'P'}); err != nil {
		return p.runnerFailed(fmt.Errorf("release container init: %w", err))
	}
	early := earlyChunk(c.spec, filter)
	if early != nil {
		// Read by the init once it is in its cgroup namespace, before
		// the last chunk; a failure is its report, read with "ready".
		if err := sendChunk(p.sock, early, nil); err != nil {
			return p.runnerFailed(err)
		}
	}
	res := <-p.setup
	p.setup = nil
	if res.err != nil {
		return res.err
	}
	return c.runnerFinish(p, res, filter, early != nil, sent)
}

// sendPlaced sends the runner init its placedChunk with its cgroup's v1
// tasks files, opened here.
func (c *creation) sendPlaced(p *pair) error {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, t := range c.cgroup.(joiner).JoinFiles() {
		fd, err := unix.Open(t, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", t, err)
		}
		fds = append(fds, fd)
	}
	return sendChunk(p.sock, placedChunk(len(fds), c.cgroupns), fds)
}

// runnerFailed returns err, or the runner init's own report when the setup
// ended with one: as initFailed, the creator's error is then only the
// consequence.
func (p *pair) runnerFailed(err error) error {
	if p.setup == nil {
		return err
	}
	wait := 50 * time.Millisecond
	if !proc.Running(p.pid, p.pidStart) {
		wait = time.Second // it exited: its report is there
	}
	select {
	case res := <-p.setup:
		p.setup = nil
		var serr *waiter.SetupError
		if errors.As(res.err, &serr) {
			return fmt.Errorf("%w (then: %w)", res.err, err)
		}
	case <-time.After(wait):
	}
	return err
}

// runnerFinish sends the runner init its last chunk once the setup is done
// and waits for "ready". sent, when not nil, runs in between, while the
// init runs the chunk; its error is the create's.
func (c *creation) runnerFinish(p *pair, res runnerResult, filter *seccomp.Program, filterIn bool, sent func() error) error {
	last, err := lastCap()
	if err != nil {
		return fmt.Errorf("read cap_last_cap: %w", err)
	}
	chunk, err := lastChunk(c.spec, res.path, res.env, filter, last, wantsInit(c.spec), filterIn)
	if err != nil {
		return err
	}
	if err := sendChunk(p.sock, chunk, nil); err != nil {
		return err
	}
	if sent != nil {
		if err := sent(); err != nil {
			// The init's own report first where the chunk failed: it
			// exits then, and its monitor with it (the lifeline is
			// closed).
			if _, rerr := readTag(p.sock, tagReady, 0); rerr != nil {
				return fmt.Errorf("%w (then: %w)", rerr, err)
			}
			return err
		}
	}
	_, err = readTag(p.sock, tagReady, 0)
	return err
}

// sendChunk sends a program to the runner init on the (non-blocking)
// sync socket.
func sendChunk(sock *os.File, p *waiter.Program, fds []int) error {
	rc, err := sock.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = p.Send(int(fd), fds...)
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return fmt.Errorf("send the container init its setup: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("send the container init its setup: %w", serr)
	}
	return nil
}

// readTag reads the 8-byte tag want from the runner init, with nfds
// descriptors when nfds > 0. Anything else is the init's report of a
// failed call, read to its end (the init exits after it), or EOF.
func readTag(sock *os.File, want string, nfds int) ([]int, error) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, len(want))
	var oob []byte
	if nfds > 0 {
		oob = make([]byte, unix.CmsgSpace(4*nfds))
	}
	var n, oobn int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return !errors.Is(rerr, unix.EAGAIN)
	}); err != nil {
		return nil, fmt.Errorf("container init: %w", err)
	}
	if rerr != nil {
		return nil, fmt.Errorf("container init: %w", os.NewSyscallError("recvmsg", rerr))
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil {
			for _, m := range msgs {
				if got, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	if n < len(want) && n > 0 {
		m, _ := io.ReadFull(sock, buf[n:])
		n += m
	}
	if string(buf[:n]) == want && len(fds) == nfds {
		return fds, nil
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	if n == 0 {
		return nil, fmt.Errorf("container init: exited before it was set up: %w", io.EOF)
	}
	// A report: read the rest, briefly (the init exits right after it).
	sock.SetReadDeadline(time.Now().Add(time.Second))
	rest, _ := io.ReadAll(sock)
	report := append(buf[:n:n], rest...)
	serr, err := waiter.ParseSetupError(report)
	if err != nil {
		return nil, fmt.Errorf("container init: %w", err)
	}
	return nil, serr
}
