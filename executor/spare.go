package executor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/proc"
)

// pair is a monitor and the init it cloned, before or after it is given a
// container: Create either starts one (launch, then awaitInit) or takes a
// spare that a Runtime made ahead of time (WithSpares).
type pair struct {
	ns       int // the namespaces the init was cloned with
	monPid   int
	monStart uint64
	pid      int // the init's, 0 until the monitor reported it
	pidStart uint64
	sock     *os.File      // the creator's end of the sync socket
	rd       *bufio.Reader // dec's, over sock
	dec      *json.Decoder
	enc      *json.Encoder
	lifeline *os.File // write end; the monitor watches the read end
	cfg      monitorConfig
	// inCgroup: the init was cloned into its cgroup2 directory.
	inCgroup bool
	// cg is the cgroup a spare's init waits in (nil: none; see
	// placeSpare).
	cg *cgroups.Spare
	// machine: the monitor is the reaper from its start (machineMonitor),
	// which takes its configuration from its environment and learns the
	// OOM counter file from the lifeline.
	machine bool
	// runner: the init is the setup runner (runner.go), not this binary;
	// setup gives the result of setting its container up (runnerStart).
	runner bool
	setup  <-chan runnerResult
	// template: the runner init makes its mount namespace from the
	// Runtime's template (template.go), not as a copy of the host's.
	template bool
	// inTemplate: the spare's init did (openProcContexts).
	inTemplate bool
	// procCtx are procfs contexts a spare runner init opened ahead
	// (openProcContexts); a create takes them.
	procCtx []int
}

// monitorTitleWidth is the room argv[1] of a monitor keeps for the
// container's ID, which it writes there once it has one (IDs are at most
// 128 bytes): `ps` and /proc/PID/cmdline then show which container it
// serves.
const monitorTitleWidth = 128

// launch starts a monitor that clones an init with the namespaces of ns:
// this binary's init stage, or with runner the setup runner (runner.go;
// the caller checked useRunner).
// The monitor and the init start with /dev/null as fds 0-2; the init gets
// the container's stdio later (sendStdio). The init's PID follows with
// awaitInit. With intoCgroup the monitor waits for its configuration,
// which configure sends with the container's cgroup2 directory, and clones
// the init into it.
func (r *Runtime) launch(ns nsPlan, spare, intoCgroup, runner, tmpl bool) (*pair, error) {
	// The runner init's pair runs no process of this binary: the
	// read-only copy is not needed (nor made) for it.
	var exe, initExe *os.File
	var err error
	if runner {
		initExe, err = r.runnerExe()
	} else {
		exe, err = r.selfExe()
		initExe = exe
	}
	if err != nil {
		return nil, err
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, os.NewSyscallError("fcntl", err)
	}
	p := &pair{ns: ns.New, sock: os.NewFile(uintptr(fds[0]), "sync")} // pollable: deadlines work
	child := os.NewFile(uintptr(fds[1]), "sync")
	defer child.Close()
	// The monitor watches the read end of this pipe: see watchCreator.
	var lp [2]int
	if err := unix.Pipe2(lp[:], unix.O_CLOEXEC); err != nil {
		p.sock.Close()
		return nil, os.NewSyscallError("pipe2", err)
	}
	p.lifeline = os.NewFile(uintptr(lp[1]), "lifeline")
	lifelineChild := os.NewFile(uintptr(lp[0]), "lifeline")
	defer lifelineChild.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		p.close()
		return nil, err
	}
	defer null.Close()
	// The monitor is the reaper (executor/waiter) from its start where it
	// can be: no Go runtime starts for it. It gets the init's clone flags
	// and environment in its own, and this binary to exec as the init.
	var argv0 string
	if exe != nil {
		argv0 = "/proc/self/fd/" + strconv.Itoa(int(exe.Fd()))
	}
	env := []string{stageEnv + "=" + stageMonitor, "GOMAXPROCS=1"}
	files := []uintptr{null.Fd(), null.Fd(), null.Fd(), child.Fd(), lifelineChild.Fd()}
	var flags string // the machine monitor's
	if p.machine = r.machineMonitor(ns); !p.machine && runner {
		p.close()
		return nil, errors.New("start monitor: the runner init needs the machine monitor")
	}
	if p.machine {
		p.runner = runner
		reaper, err := r.reaperExe()
		if err != nil {
			p.close()
			return nil, err
		}
		clone := ns.New &^ unix.CLONE_NEWCGROUP
		if tmpl {
			// The init makes its mount namespace from the template
			// (enterTemplate): a copy of this one would be thrown away.
			clone &^= unix.CLONE_NEWNS
			p.template = true
		}
		flags = strconv.FormatUint(uint64(clone), 10)
		if intoCgroup {
			flags += "c"
		}
		// Exec'd as fd 6 of the child: ForkExec may put its own pipe on
		// the number above the highest of files, where a descriptor of
		// this process would then be replaced before the exec.
		argv0 = "/proc/self/fd/6"
		env = append([]string{waiter.MonitorEnv + "=" + flags}, initEnv(spare)...)
		files = append(files, initExe.Fd(), reaper.Fd())
	}
	if p.machine && (spare || runner) && r.spares != nil && !r.noSpawner {
		// The spawner forks it (spawner.go), with the environment of a
		// spare's init, which the runner init ignores; where it cannot,
		// this process starts it.
		if p.monPid, err = r.forkMonitor(flags, child, lifelineChild, initExe); err != nil && !errors.Is(err, errSpawnerClosed) {
			r.log.Warn("the spawner could not fork a monitor; starting it directly", "err", err)
		}
	}
	if p.monPid == 0 {
		// syscall.ForkExec, not os/exec: os.StartProcess probes pidfd
		// support in every new process with an extra fork, and nothing
		// here needs it.
		p.monPid, err = syscall.ForkExec(argv0,
			[]string{"reconciled-monitor", strings.Repeat(" ", monitorTitleWidth)}, &syscall.ProcAttr{
				Env:   env,
				Files: files,
				Sys:   &syscall.SysProcAttr{Setsid: true},
			})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("start monitor: %w", err)
		}
	}
	if r.reap {
		go reapWhenDone(p.monPid)
	}
	p.rd = bufio.NewReaderSize(p.sock, 512)
	p.dec = json.NewDecoder(p.rd)
	p.enc = json.NewEncoder(p.sock)
	p.cfg = monitorConfig{NS: ns, Spare: spare, NoReaper: r.goMonitor, IntoCgroup: intoCgroup}
	if !intoCgroup {
		if err := p.configure(nil); err != nil {
			p.kill()
			return nil, err
		}
	}
	if p.monStart, _, err = proc.StartTime(p.monPid); err != nil {
		p.kill()
		return nil, fmt.Errorf("monitor: %w", err)
	}
	return p, nil
}

// launchResult is what launchAsync's launch gave.
type launchResult struct {
	p   *pair
	err error
}

// launchAsync launches a pair as launch does, from a goroutine: the
// outcome comes on the channel.
func (r *Runtime) launchAsync(ns nsPlan, intoCgroup, runner, tmpl bool) <-chan launchResult {
	done := make(chan launchResult, 1)
	go func() {
		p, err := r.launch(ns, false, intoCgroup, runner, tmpl)
		done <- launchResult{p, err}
	}()
	return done
}

// machineMonitor reports whether the init of ns can be cloned by the
// machine monitor (executor/waiter: the reaper started with
// waiter.MonitorEnv) instead of a Go one: it clones with flags and a
// cgroup, but writes no user namespace's maps and joins no namespace (the
// init joins a mount namespace itself).
func (r *Runtime) machineMonitor(ns nsPlan) bool {
	if r.goMonitor || !waiter.ReaperAvailable() || ns.New&unix.CLONE_NEWUSER != 0 {
		return false
	}
	for _, j := range ns.Join {
		if j.Flag != unix.CLONE_NEWNS {
			return false
		}
	}
	return true
}

// reaperExe returns the reaper's sealed memfd, made once per Runtime, on a
// high descriptor as selfExe's (launch hands it to the monitor as fd 6).
func (r *Runtime) reaperExe() (*os.File, error) {
	return r.reaper.get("reaper", "reconciled-reaper", waiter.ReaperMemfd)
}

// configure sends the monitor its configuration, with the container's
// cgroup2 directory when it is to clone the init into it. The machine
// monitor has its configuration from its start and gets only the
// directory, with one byte.
func (p *pair) configure(cgroupDir *os.File) error {
	var data []byte
	if p.machine {
		if !p.cfg.IntoCgroup {
			return nil
		}
		data = []byte{'c'}
	} else {
		var err error
		if data, err = json.Marshal(p.cfg); err != nil {
			return err
		}
		data = append(data, '\n')
	}
	var rights []byte
	if p.cfg.IntoCgroup {
		if cgroupDir == nil {
			return errors.New("send monitor config: no cgroup directory")
		}
		rights = unix.UnixRights(int(cgroupDir.Fd()))
	}
	rc, err := p.sock.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), data, rights, nil, 0)
		return serr != unix.EAGAIN
	}); err != nil {
		return fmt.Errorf("send monitor config: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("send monitor config: %w", os.NewSyscallError("sendmsg", serr))
	}
	return nil
}

// awaitInit reads the init's PID from the monitor.
func (p *pair) awaitInit(ctx context.Context) error {
	var m message
	if err := recvMessage(ctx, p.dec, &m); err != nil {
		return err
	}
	if m.Pid <= 0 {
		return errors.New("monitor sent no init PID")
	}
	start, _, err := proc.StartTime(m.Pid)
	if err != nil {
		return fmt.Errorf("container init: %w", err)
	}
	p.pid, p.pidStart, p.inCgroup = m.Pid, start, m.InCgroup
	return nil
}

// created tells the monitor which container it serves (its state
// directory, where it records the init's exit, and its title in ps) and
// that the container is recorded created: from now on the lifeline
// closing means nothing to it. With leave, the monitor exits instead of
// waiting for the init (CreateOptions.CallerReaps). The machine monitor
// gets the OOM counter file of st it is to read when the init exits (""
// for none) and a newline before that byte; the Go monitor reads the
// state for it. It is one write, at the end of a create: the monitor
// wakes once (a create whose creator dies before it has its init killed
// by the monitor, and delete --force finds the rest from the state).
func (p *pair) created(stateDir string, leave bool, st *State) error {
	b := byte(createdWait)
	if leave {
		b = createdLeave
	}
	msg := []byte(stateDir + "\n")
	if p.machine {
		msg = append(msg, oomCounterFile(*st)+"\n"...)
	}
	msg = append(msg, b)
	if _, err := p.lifeline.Write(msg); err != nil {
		return fmt.Errorf("tell the monitor the container is created: %w", err)
	}
	return nil
}

// What follows the state directory on the lifeline once the container is
// created: the monitor waits for the init and records its exit, or leaves
// it to the caller's reaper.
const (
	createdWait  = 1
	createdLeave = 2
)

// sendStdio hands the init the container's fds 0-2, the extra files that
// become its fds 3, ... and the runtime's files for the init itself
// (outside: see initConfig.Prepared), with SCM_RIGHTS and one byte, the
// number of runtime files, that the init reads before anything else.
func (p *pair) sendStdio(stdin, stdout, stderr *os.File, extra, outside []*os.File) error {
	if len(extra)+len(outside) > MaxExtraFiles {
		return fmt.Errorf("send stdio to the container init: %d extra files and %d of the runtime's, at most %d can be passed", len(extra), len(outside), MaxExtraFiles)
	}
	rc, err := p.sock.SyscallConn()
	if err != nil {
		return err
	}
	fds := []int{int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd())}
	for _, f := range extra {
		fds = append(fds, int(f.Fd()))
	}
	for _, f := range outside {
		fds = append(fds, int(f.Fd()))
	}
	rights := unix.UnixRights(fds...)
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), []byte{byte(len(outside))}, rights, nil, 0)
		return serr != unix.EAGAIN
	}); err != nil {
		return fmt.Errorf("send stdio to the container init: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("send stdio to the container init: %w", os.NewSyscallError("sendmsg", serr))
	}
	return nil
}

// initFailed returns err, or the init's own error when it sent one: after
// an early "go" (early) the init may fail its setup while the creator
// still works on the cgroup, and the creator's error (a PID gone, a
// broken pipe) is then only the consequence.
func (p *pair) initFailed(early bool, err error) error {
	if p.runner {
		return p.runnerFailed(err)
	}
	if !early {
		return err
	}
	wait := 50 * time.Millisecond
	if !proc.Running(p.pid, p.pidStart) {
		wait = time.Second // it exited: its message is there
	}
	p.sock.SetReadDeadline(time.Now().Add(wait))
	var m message
	if derr := p.dec.Decode(&m); derr == nil && m.Error != "" {
		return fmt.Errorf("%s (then: %w)", m.Error, err)
	}
	return err
}

// alive reports whether both processes are still the ones started.
func (p *pair) alive() bool {
	return proc.Running(p.monPid, p.monStart) && proc.Running(p.pid, p.pidStart)
}

// close drops the creator's ends: a monitor not yet told "created" then
// kills its init (see watchCreator), and an init still waiting for its
// configuration reads EOF and exits.
func (p *pair) close() {
	for _, fd := range p.procCtx {
		unix.Close(fd)
	}
	p.procCtx = nil
	if p.sock != nil {
		p.sock.Close()
	}
	if p.lifeline != nil {
		p.lifeline.Close()
	}
}

// kill closes the pair and kills the monitor (its init then reads EOF).
func (p *pair) kill() {
	p.close()
	if p.monPid > 0 {
		unix.Kill(p.monPid, unix.SIGKILL)
	}
}

// spares is a Runtime's stock of pairs made ahead of time, by the
// namespaces their inits were cloned with. A monitor and an init cost two
// starts of this binary (a few ms on the create path); a long-lived
// Runtime (the daemon) makes them while nothing waits.
type spares struct {
	mu      sync.Mutex
	per     int                 // pairs kept ready per set of namespaces
	idle    map[int][]*pair     // by clone flags
	filling map[int]int         // launches in flight
	pending map[int]*time.Timer // refills waiting for a start (refillLater)
	// waiting are the creates that found no pair ready and wait for the
	// next one a launch in flight makes (awaitSpare), oldest first.
	waiting map[int][]chan *pair
	closed  bool
	// launched, a test hook, runs when a launch made p, before p is
	// handed to a create or kept.
	launched func(p *pair)
	wg       sync.WaitGroup

	seq        atomic.Uint64 // names spare cgroups
	staleSwept sync.Once     // RemoveStaleSpares, before the first placement

}

// maxSpareKinds bounds the sets of namespaces spares are kept for; the
// containers of one host use one or two (with and without their own
// network).
const maxSpareKinds = 4

// WithSpares makes the Runtime keep n monitor and init pairs started
// ahead of time for each set of namespaces it has created containers with
// (up to maxSpareKinds), so that Create skips starting them. Each idle
// pair holds about 2 MiB. It implies WithReaper: only a long-lived caller
// gains from spares. Close the Runtime to stop them.
func WithSpares(n int) Option {
	return func(r *Runtime) {
		if n <= 0 {
			return
		}
		r.reap = true
		r.spares = &spares{per: n, idle: map[int][]*pair{}, filling: map[int]int{}, pending: map[int]*time.Timer{}, waiting: map[int][]chan *pair{}}
	}
}

// spareRunner, in a spare's kind, says its init is the runner init, and
// spareTemplate that it made its mount namespace from the template (only
// with spareRunner): bits above the clone flags.
const (
	spareRunner   = 1 << 40
	spareTemplate = 1 << 41
)

// takeSpare returns a ready pair for ns, with the runner init or this
// binary's, or nil; either way it starts making more of its kind in the
// background. Namespaces joined by path are never prepared ahead.
func (r *Runtime) takeSpare(ns nsPlan, runner, tmpl bool) *pair {
	s := r.spares
	if s == nil || len(ns.Join) > 0 {
		return nil
	}
	kind := spareKind(ns, runner, tmpl)
	defer r.refillLater(kind)
	s.mu.Lock()
	defer s.mu.Unlock()
	for q := s.idle[kind]; len(q) > 0; q = s.idle[kind] {
		p := q[len(q)-1]
		s.idle[kind] = q[:len(q)-1]
		if p.alive() {
			return p
		}
		r.discard(p)
	}
	return nil
}

// spareKind is the kind of spare a create with ns needs.
func spareKind(ns nsPlan, runner, tmpl bool) int {
	kind := ns.New
	if runner {
		kind |= spareRunner
		if tmpl {
			kind |= spareTemplate
		}
	}
	return kind
}

// spareWaitMax bounds how long awaitSpare waits for a launch in flight.
// A launch takes about 10 ms on a 2-core VM busy with drops back to back
// (p90 15 ms); one that takes longer than this is stuck, and the create
// launches its own.
const spareWaitMax = 250 * time.Millisecond

// awaitSpare is for a create that takeSpare found no pair for: when a
// launch of its kind is in flight (a refill) that no other create waits
// for, it returns the pair that launch makes. It returns nil, and the
// create launches its own pair, when there is none to wait for, when the
// launch fails, after spareWaitMax and when ctx ends.
//
// Drops back to back take the spares faster than the refills (put off
// until the container started) make them: on a 2-core VM about a quarter
// of the creates found none, half of those with a refill under way. A
// launch of their own then ran beside the refills, all of them slower for
// it, and with no spare cgroup to rename its init joined its cgroups, a
// wait for an RCU grace period per v1 hierarchy. The refill in flight
// was ready a median 1.8 ms later; a create's own launch held it up about
// 6 ms.
func (r *Runtime) awaitSpare(ctx context.Context, ns nsPlan, runner, tmpl bool) *pair {
	s := r.spares
	if s == nil || len(ns.Join) > 0 {
		return nil
	}
	kind := spareKind(ns, runner, tmpl)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if s.filling[kind] <= len(s.waiting[kind]) {
		s.mu.Unlock()
		return nil // nothing under way for this create: it launches its own
	}
	ch := make(chan *pair, 1)
	s.waiting[kind] = append(s.waiting[kind], ch)
	s.mu.Unlock()

	timer := time.NewTimer(spareWaitMax)
	defer timer.Stop()
	var p *pair
	handed := false
	select {
	case p = <-ch:
		handed = true
	case <-timer.C:
	case <-ctx.Done():
	}
	if !handed {
		s.mu.Lock()
		if i := slices.Index(s.waiting[kind], ch); i >= 0 {
			s.waiting[kind] = slices.Delete(s.waiting[kind], i, i+1)
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		p = <-ch // handed one (or nil) meanwhile: it is this create's
	}
	if p != nil && !p.alive() {
		r.discard(p)
		return nil
	}
	return p
}

// discard kills a spare pair and removes its cgroup once its init is gone.
func (r *Runtime) discard(p *pair) {
	p.kill()
	if p.cg != nil {
		go r.removeSpareCgroup(p.cg)
	}
}

// spareRefillDelay bounds how long refillLater waits for a start.
const spareRefillDelay = 100 * time.Millisecond

// spareStartedDelay is how long after a start the refills wait: the
// container's process has the CPU to itself for its first steps (on a
// 2-core VM a shell that printed a line did so 0.8-1.2 ms later when its
// spare's replacement was made beside it).
const spareStartedDelay = 5 * time.Millisecond

// refillLater makes spares for ns once a container has started
// (StartState and CreateAndStart call refillAfterStart), or after
// spareRefillDelay. Starting a monitor and an init costs two starts of
// this binary: CPU that the create and the start of the container that
// took the spare would share with them (on a 2-core host a dropped
// manifest ran 3 ms later for it).
func (r *Runtime) refillLater(ns int) {
	s := r.spares
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[ns]; ok || s.closed {
		return
	}
	s.pending[ns] = time.AfterFunc(spareRefillDelay, r.refillPending)
}

// refillAfterStart has the refills refillLater put off start
// spareStartedDelay from now.
func (r *Runtime) refillAfterStart() {
	s := r.spares
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.pending {
		t.Reset(spareStartedDelay)
	}
}

// refillPending starts the refills refillLater put off.
func (r *Runtime) refillPending() {
	s := r.spares
	if s == nil {
		return
	}
	s.mu.Lock()
	var kinds []int
	for ns, t := range s.pending {
		t.Stop()
		kinds = append(kinds, ns)
	}
	clear(s.pending)
	s.mu.Unlock()
	for _, ns := range kinds {
		r.refill(ns)
	}
}

// refill starts pairs for ns until per of them are ready or on the way.
func (r *Runtime) refill(ns int) {
	s := r.spares
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if _, known := s.idle[ns]; !known && len(s.idle) >= maxSpareKinds {
		return
	}
	if _, known := s.idle[ns]; !known {
		s.idle[ns] = nil
	}
	for len(s.idle[ns])+s.filling[ns] < s.per {
		r.launchSpareLocked(ns)
	}
}

// launchSpareLocked launches one pair of kind ns in the background (s.mu
// held): it goes to the create that waits longest for one (awaitSpare),
// else among the spares.
func (r *Runtime) launchSpareLocked(ns int) {
	s := r.spares
	s.filling[ns]++
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		p, err := r.launchReady(ns)
		if err == nil && s.launched != nil {
			s.launched(p)
		}
		s.mu.Lock()
		s.filling[ns]--
		var waiter chan *pair
		if w := s.waiting[ns]; len(w) > 0 {
			waiter = w[0]
			s.waiting[ns] = w[1:]
		}
		if err != nil {
			s.mu.Unlock()
			if waiter != nil {
				waiter <- nil // it launches its own
			}
			r.log.Warn("start a spare container monitor", "err", err)
			return
		}
		if s.closed {
			s.mu.Unlock()
			if waiter != nil {
				waiter <- nil
			}
			p.close()
			if p.cg != nil {
				r.removeSpareCgroup(p.cg) // before Close returns
			}
			return
		}
		if waiter != nil {
			s.mu.Unlock()
			waiter <- p
			r.refillLater(ns) // one fewer on the way than the refill counted
			return
		}
		s.idle[ns] = append(s.idle[ns], p)
		s.mu.Unlock()
	}()
}

// launchReady launches a pair of a spare's kind and waits for its init.
func (r *Runtime) launchReady(kind int) (*pair, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runner := kind&spareRunner != 0
	tmpl := kind&spareTemplate != 0
	var tmplNS *os.File
	if tmpl {
		if tmplNS = r.template(); tmplNS == nil {
			return nil, errors.New("no mount namespace template")
		}
	}
	// The runner init joins its spare cgroup itself, where the driver
	// can have it (cgroups.SelfPlacer): no PID is written.
	var joins *cgroups.Spare
	if runner {
		var err error
		if joins, err = r.prepareSpare(ctx); err != nil {
			return nil, err
		}
	}
	var unified *os.File
	if joins != nil {
		var err error
		if unified, err = joins.OpenUnified(); err != nil {
			r.removeSpareCgroup(joins)
			return nil, err
		}
		if unified != nil {
			defer unified.Close()
		}
	}
	p, err := r.launch(nsPlan{New: kind &^ (spareRunner | spareTemplate)}, true, unified != nil, runner, tmpl)
	if err != nil {
		if joins != nil {
			r.removeSpareCgroup(joins)
		}
		return nil, err
	}
	fail := func(err error) (*pair, error) {
		p.kill()
		if joins != nil {
			r.removeSpareCgroup(joins)
		}
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { p.sock.SetDeadline(time.Now()) })
	defer stop()
	if unified != nil {
		if err := p.configure(unified); err != nil {
			return fail(err)
		}
	}
	if err := p.awaitInit(ctx); err != nil {
		return fail(err)
	}
	if p.runner {
		// The procfs a container almost always mounts: its context
		// opened now, not on the create's path.
		var join []string
		if joins != nil {
			join = joins.JoinFiles()
		}
		if err := p.openProcContexts(1, tmplNS, join...); err != nil {
			return fail(err)
		}
	}
	if joins != nil {
		p.cg = joins
		if unified != nil && !p.inCgroup {
			if err := joins.PlaceUnified(p.pid); err != nil {
				return fail(err)
			}
		}
		return p, nil
	}
	if err := r.placeSpare(ctx, p); err != nil {
		p.kill()
		if p.cg != nil {
			r.removeSpareCgroup(p.cg)
		}
		return nil, err
	}
	return p, nil
}

// placeSpare puts a spare's init in a cgroup of its own beside those of
// the containers it may serve, where the driver can (cgroups.SpareDriver):
// a create then renames that cgroup rather than moving the init (the first
// move after a quiet moment waits for an RCU grace period, most of a
// create's time). Spare cgroups a stopped runtime left are removed first.
func (r *Runtime) placeSpare(ctx context.Context, p *pair) error {
	sd, at := r.spareDriver(ctx)
	if sd == nil {
		return nil
	}
	var err error
	if p.cg, err = sd.PlaceSpare(ctx, at, p.pid); err != nil {
		return fmt.Errorf("place a spare container init in its cgroup: %w", err)
	}
	return nil
}

// prepareSpare makes a spare cgroup for an init that joins it itself
// (cgroups.SelfPlacer), or returns nil where the driver has none.
func (r *Runtime) prepareSpare(ctx context.Context) (*cgroups.Spare, error) {
	sd, at := r.spareDriver(ctx)
	sp, ok := sd.(cgroups.SelfPlacer)
	if !ok {
		return nil, nil
	}
	s, err := sp.PrepareSpare(ctx, at)
	if err != nil {
		if s != nil {
			r.removeSpareCgroup(s)
		}
		return nil, fmt.Errorf("make a spare cgroup: %w", err)
	}
	return s, nil
}

// spareDriver returns the cgroup driver as a SpareDriver and the path of
// the next spare cgroup, beside the containers' cgroups, having removed
// the spare cgroups of a stopped runtime once; nil where the driver places
// no spare (or fails: a create reports its error).
func (r *Runtime) spareDriver(ctx context.Context) (cgroups.SpareDriver, string) {
	d, err := r.cgroupDriver()
	if err != nil || d == nil {
		return nil, ""
	}
	sd, ok := d.(cgroups.SpareDriver)
	if !ok {
		return nil, ""
	}
	parent := path.Dir(r.defaultCgroupsPath("spare"))
	if parent == "." {
		parent = cgroups.DefaultParent // the driver's default for an empty path
	}
	r.spares.staleSwept.Do(func() {
		if err := sd.RemoveStaleSpares(ctx, parent); err != nil {
			r.log.Warn("remove the spare cgroups of a stopped runtime", "err", err)
		}
	})
	return sd, path.Join(parent, cgroups.SpareName(r.spares.seq.Add(1)))
}

// removeSpareCgroup removes the cgroup a spare's init waited in, once the
// init has left it or exited.
func (r *Runtime) removeSpareCgroup(s *cgroups.Spare) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Remove(ctx); err != nil {
		r.log.Warn("remove a spare container init's cgroup", "cgroup", s.Path(), "err", err)
	}
}

// Close stops the spare monitors and inits (WithSpares), waits for those
// being started and closes the mount namespace template. Containers are
// not affected. The Runtime must not create containers afterwards.
func (r *Runtime) Close() error {
	s := r.spares
	if s == nil {
		return nil
	}
	s.mu.Lock()
	s.closed = true
	for ns, t := range s.pending {
		t.Stop()
		delete(s.pending, ns)
	}
	var all []*pair
	for ns, q := range s.idle {
		all = append(all, q...)
		s.idle[ns] = nil
	}
	s.mu.Unlock()
	for _, p := range all {
		p.close() // the monitor kills its init, reaps it and exits
	}
	s.wg.Wait()
	r.closeSpawner()
	for _, p := range all {
		if p.cg != nil {
			r.removeSpareCgroup(p.cg)
		}
	}
	r.tmpl.close()
	r.endSweeps()
	return nil
}

// endSweepsTimeout bounds how long Close waits for the moves that adopted
// spare cgroups left for later: one grace period each, one at a time.
const endSweepsTimeout = 5 * time.Second

// endSweeps runs the moves that adopted spare cgroups left for later
// (cgroups.SpareDriver.EndSweeps), so that the containers this runtime
// leaves running are in their own cgroups when it stops.
func (r *Runtime) endSweeps() {
	d, err := r.cgroupDriver()
	if err != nil {
		return
	}
	sd, ok := d.(cgroups.SpareDriver)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), endSweepsTimeout)
	defer cancel()
	if err := sd.EndSweeps(ctx); err != nil {
		r.log.Warn("move containers' processes out of spare cgroups (the next start moves the rest)", "err", err)
	}
}
