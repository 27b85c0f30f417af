package executor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/sys"
)

// runMonitor is the monitor stage: it starts the container's init in its
// namespaces, reports the init's PID to the creator, waits for the init to
// exit and records how it ended. It never returns.
func runMonitor() {
	debug.SetGCPercent(-1) // as in runInit
	sock := fdFile(3)
	cfg, cgroupFd, err := readMonitorConfig(3)
	if err != nil {
		sendMessage(sock, message{Error: "monitor: read config: " + err.Error()})
		os.Exit(1)
	}
	// fd 4 is the creator's lifeline (see Create); the init does not get it.
	unix.CloseOnExec(4)
	attr := &syscall.ProcAttr{
		Env:   initEnv(cfg.Spare),
		Files: []uintptr{0, 1, 2, 3},
		Sys: &syscall.SysProcAttr{
			// The cgroup namespace is unshared by the init once it is in
			// its cgroup, so that the namespace is rooted there.
			Cloneflags: uintptr(cfg.NS.New &^ unix.CLONE_NEWCGROUP),
		},
	}
	if cfg.NS.New&unix.CLONE_NEWUSER != 0 {
		// The maps are written before the init execs, and it execs as
		// root of its namespace: it keeps its capabilities there.
		// setgroups stays "allow", as runc leaves it for a root runtime.
		attr.Sys.UidMappings = sysIDMap(cfg.NS.UIDMappings)
		attr.Sys.GidMappings = sysIDMap(cfg.NS.GIDMappings)
		attr.Sys.GidMappingsEnableSetgroups = true
		attr.Sys.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	// "/proc/self/exe" is the read-only copy we were started from.
	pid, err := startIn(func() (int, error) {
		if cgroupFd >= 0 {
			a, spa := *attr, *attr.Sys
			spa.UseCgroupFD, spa.CgroupFD = true, cgroupFd
			a.Sys = &spa
			pid, err := syscall.ForkExec("/proc/self/exe", []string{"reconciled-init"}, &a)
			if err == nil {
				return pid, nil
			}
			// A kernel without clone3 or CLONE_INTO_CGROUP (before
			// 5.7): cloned as before, the creator moves the init.
			unix.Close(cgroupFd)
			cgroupFd = -1
		}
		return syscall.ForkExec("/proc/self/exe", []string{"reconciled-init"}, attr)
	}, cfg.NS.Join)
	if err != nil {
		sendMessage(sock, message{Error: "start container init: " + err.Error()})
		os.Exit(1)
	}
	inCgroup := cgroupFd >= 0
	if inCgroup {
		unix.Close(cgroupFd)
	}
	if err := sendMessage(sock, message{Pid: pid, InCgroup: inCgroup}); err != nil {
		unix.Kill(pid, unix.SIGKILL)
	}
	reserveFd(3) // the init has the socket now

	stateDir, leave := watchCreator(4, pid)
	if stateDir != "" && leave {
		// The caller's side reaps the init (CreateOptions.CallerReaps):
		// it is reparented to the nearest subreaper as this exits.
		os.Exit(0)
	}
	if stateDir != "" && !cfg.NoReaper && waiter.ReaperAvailable() {
		// Wait as the reaper (executor/waiter): one thread and a few KiB
		// for the container's whole life instead of a Go runtime. It
		// returns only when that could not be done; then this process
		// waits itself, and says why where Delete finds it (best effort:
		// there is nowhere else to say it).
		if err := becomeReaper(stateDir); err != nil {
			msg := "the monitor could not become the reaper and waits in Go: " + err.Error() + "\n"
			os.WriteFile(filepath.Join(stateDir, monitorErrFile), []byte(msg), 0o600)
		}
	}
	debug.SetGCPercent(20)
	debug.FreeOSMemory()

	var ws unix.WaitStatus
	err = retryEINTR(func() error { _, err := unix.Wait4(pid, &ws, 0, nil); return err })
	rec := exitRecord{Finished: time.Now().UTC()}
	switch {
	case err != nil:
		rec.ExitCode = 255
	case ws.Signaled():
		rec.ExitSignal = unix.SignalName(ws.Signal())
		rec.ExitCode = 128 + int(ws.Signal())
	default:
		rec.ExitCode = ws.ExitStatus()
	}
	if stateDir == "" {
		os.Exit(0) // a spare that never got a container: nothing to record
	}
	rec.OOMKilled = oomKilledSince(stateDir)
	if err := writeJSONAtomic(stateDir, exitFile, rec); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// readMonitorConfig reads the monitor's configuration, one line of JSON,
// from the socket sock, and the cgroup2 directory's fd sent with it when
// it says IntoCgroup (-1 otherwise). Nothing else comes on the socket
// before the monitor answers, so reading past the line loses nothing.
func readMonitorConfig(sock int) (monitorConfig, int, error) {
	var cfg monitorConfig
	var data []byte
	var fds []int
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	for !bytes.Contains(data, []byte{'\n'}) {
		var n, oobn int
		err := retryEINTR(func() (err error) {
			n, oobn, _, _, err = unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
			return err
		})
		if err != nil {
			return cfg, -1, os.NewSyscallError("recvmsg", err)
		}
		if n == 0 {
			return cfg, -1, io.ErrUnexpectedEOF
		}
		data = append(data, buf[:n]...)
		if oobn > 0 {
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				return cfg, -1, err
			}
			for i := range msgs {
				if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	if err := json.Unmarshal(data[:bytes.IndexByte(data, '\n')], &cfg); err != nil {
		return cfg, -1, err
	}
	fd := -1
	for _, f := range fds {
		if fd < 0 && cfg.IntoCgroup {
			fd = f
			continue
		}
		unix.Close(f)
	}
	if cfg.IntoCgroup && fd < 0 {
		return cfg, -1, errors.New("no cgroup directory came with it")
	}
	return cfg, fd, nil
}

// fdFile is a descriptor read and written with plain system calls. Unlike
// an *os.File it has no finalizer that could close the number once another
// file is on it.
type fdFile int

func (f fdFile) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f fdFile) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Write(int(f), b[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// reserveFd closes what is on fd by putting /dev/null there (close-on-exec)
// instead: the number stays taken, so that nothing the Go runtime opens
// later (its poller's descriptors) lands on 3 or 4, where becomeReaper puts
// the reaper's files.
func reserveFd(fd int) {
	null, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return
	}
	if null != fd {
		unix.Dup3(null, fd, unix.O_CLOEXEC)
		unix.Close(null)
	}
}

// becomeReaper execs the reaper with the state directory at fd 3 and the
// memory cgroup's OOM counter file at fd 4 (see reaper_amd64.S); the init
// stays its child. It returns only on failure. A container whose cgroup
// driver gives no memory cgroup directory keeps the Go monitor, which asks
// the driver.
func becomeReaper(stateDir string) error {
	data, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if err != nil {
		return err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return err
	}
	oom := oomCounterFiles(st)
	if len(oom) == 0 && st.CgroupDriver != "" {
		return errors.New("no memory cgroup directory in the state")
	}
	// Each descriptor is moved above 9 first, so that placing one on 3
	// or 4 cannot close another.
	high := func(fd int) (int, error) {
		n, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 10)
		unix.Close(fd)
		return n, err
	}
	dir, err := unix.Open(stateDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if dir, err = high(dir); err != nil {
		return err
	}
	oomFd := -1
	for _, f := range oom {
		if fd, err := unix.Open(f, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			if oomFd, err = high(fd); err != nil {
				return err
			}
			break
		}
	}
	mfd, err := waiter.ReaperMemfd()
	if err != nil {
		return err
	}
	if mfd, err = high(mfd); err != nil {
		return err
	}
	if err := closeExtraFds(); err != nil {
		return err
	}
	// 3 and 4 hold /dev/null (reserveFd), not a descriptor of the runtime.
	if err := unix.Dup3(dir, 3, 0); err != nil {
		return os.NewSyscallError("dup3", err)
	}
	if oomFd >= 0 {
		if err := unix.Dup3(oomFd, 4, 0); err != nil {
			return os.NewSyscallError("dup3", err)
		}
	} // else 4 is /dev/null, close-on-exec: the reaper finds it closed

	return waiter.ExecReaper(mfd, []string{"reconciled-monitor", filepath.Base(stateDir)})
}

// initEnv is the environment of a container's init, as its monitor starts
// it (a spare's warms its decoder while it waits).
func initEnv(spare bool) []string {
	env := []string{stageEnv + "=" + stageInit, "GOMAXPROCS=1", initGoDebug}
	if spare {
		env = append(env, spareEnv+"=1")
	}
	return env
}

// oomCounterFiles are the files the reaper may read the container's OOM
// kill counter from, in order: memory.events where the unified hierarchy
// has the memory controller (v2), else the v1 memory controller's file (on
// a hybrid host the unified directory has no memory.events).
func oomCounterFiles(st State) []string {
	var oom []string
	if p, ok := st.CgroupPaths[""]; ok {
		oom = append(oom, filepath.Join(p, "memory.events"))
	}
	if p, ok := st.CgroupPaths["memory"]; ok {
		oom = append(oom, filepath.Join(p, "memory.oom_control"))
	}
	return oom
}

// oomCounterFile is the first of oomCounterFiles that exists ("" if none),
// which the creator hands the machine monitor (pair.created).
func oomCounterFile(st State) string {
	for _, f := range oomCounterFiles(st) {
		if unix.Access(f, unix.R_OK) == nil {
			return f
		}
	}
	return ""
}

// watchCreator follows the lifeline fd until the creator says the
// container is created or the init exits, and returns the container's
// state directory ("" if the creator never named one) and whether the
// monitor is to leave the init to the caller's reaper. Once the container
// is recorded created the creator writes the state directory and a
// newline, then one byte (createdWait or createdLeave), in one write (see
// pair.created); a parser takes them whether they come together or not.
// EOF
// before that byte means the creator died or gave up: the init is killed,
// so that nothing of a half-made container keeps running unseen.
func watchCreator(lifeline, pid int) (string, bool) {
	defer reserveFd(lifeline)
	pfds := []unix.PollFd{{Fd: int32(lifeline), Events: unix.POLLIN}}
	if pidfd, err := unix.PidfdOpen(pid, 0); err == nil {
		defer unix.Close(pidfd)
		pfds = append(pfds, unix.PollFd{Fd: int32(pidfd), Events: unix.POLLIN})
	}
	var buf []byte
	stateDir := func() string {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return string(buf[:i])
		}
		return ""
	}
	for {
		if _, err := unix.Poll(pfds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return stateDir(), false
		}
		if pfds[0].Revents == 0 {
			return stateDir(), false // the init exited
		}
		var b [512]byte
		n, err := unix.Read(lifeline, b[:])
		if err == unix.EINTR {
			continue
		}
		if n <= 0 {
			unix.Kill(pid, unix.SIGKILL)
			return stateDir(), false
		}
		buf = append(buf, b[:n]...)
		if dir := stateDir(); dir != "" {
			setTitle(filepath.Base(dir))
			if len(buf) > len(dir)+1 {
				return dir, buf[len(dir)+1] == createdLeave // created
			}
		}
	}
}

// setTitle writes the container's ID into the room launch left in argv[1]
// (spaces), so that ps and /proc/PID/cmdline name the container a monitor
// serves. os.Args[1] still points at the kernel's argv area: the bytes are
// changed in place, nothing in this process reads them after.
func setTitle(id string) {
	if len(os.Args) < 2 || len(os.Args[1]) < len(id) {
		return
	}
	area := unsafe.Slice(unsafe.StringData(os.Args[1]), len(os.Args[1]))
	n := copy(area, id)
	clear(area[n:])
}

// startIn runs start (a fork) from an OS thread that has first entered the
// namespaces in join; the new process inherits them (and is forked into a
// joined PID namespace, which setns alone cannot do for the caller). The
// thread is thrown away afterwards: it never unlocks.
func startIn(start func() (int, error), join []nsJoin) (int, error) {
	var here []nsJoin
	for _, j := range join {
		// The init joins a mount namespace itself (initJoinMount): the
		// exec of /proc/self/exe must still resolve in the host's.
		if j.Flag != unix.CLONE_NEWNS {
			here = append(here, j)
		}
	}
	if len(here) == 0 && !sys.Batched() {
		return start()
	}
	type result struct {
		pid int
		err error
	}
	var r result
	// On a thread that ends afterwards: it is in the namespaces joined,
	// and, in a daemon whose threads are batch (sys.Batch), it has what
	// the daemon was started with, for the child to inherit.
	sys.OnOwnThread(func() {
		if r.err = sys.SetStartedHere(); r.err != nil {
			return
		}
		for _, j := range here {
			if r.err = setnsPath(j); r.err != nil {
				return
			}
		}
		r.pid, r.err = start()
	})
	return r.pid, r.err
}

func setnsPath(j nsJoin) error {
	fd, err := unix.Open(j.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", j.Path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, j.Flag); err != nil {
		return fmt.Errorf("join namespace %s: %w", j.Path, os.NewSyscallError("setns", err))
	}
	return nil
}

// oomKilledSince reports whether the OOM killer acted in the container's
// cgroup since create, from the state the creator recorded.
func oomKilledSince(stateDir string) bool {
	data, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if err != nil {
		return false
	}
	var st State
	if json.Unmarshal(data, &st) != nil {
		return false
	}
	n, ok := readOOMKills(st.CgroupDriver, st.ID, st.CgroupPath, st.CgroupPaths)
	return ok && n > st.OOMKillsAtStart
}
