package executor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// runMonitor is the monitor stage: it starts the container's init in its
// namespaces, reports the init's PID to the creator, waits for the init to
// exit and records how it ended. It never returns.
func runMonitor() {
	debug.SetGCPercent(-1) // as in runInit
	sock := os.NewFile(3, "sync")
	var cfg monitorConfig
	if err := json.NewDecoder(bufio.NewReaderSize(sock, 512)).Decode(&cfg); err != nil {
		sendMessage(sock, message{Error: "monitor: read config: " + err.Error()})
		os.Exit(1)
	}
	// fd 4 is the creator's lifeline (see Create); the init does not get it.
	unix.CloseOnExec(4)
	env := []string{stageEnv + "=" + stageInit, "GOMAXPROCS=1"}
	if cfg.Spare {
		env = append(env, prefaultEnv+"=1")
	}
	attr := &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{0, 1, 2, 3},
		Sys: &syscall.SysProcAttr{
			// The cgroup namespace is unshared by the init once it is in
			// its cgroup, so that the namespace is rooted there.
			Cloneflags: uintptr(cfg.NS.New &^ unix.CLONE_NEWCGROUP),
		},
	}
	// "/proc/self/exe" is the read-only copy we were started from.
	pid, err := startIn(func() (int, error) {
		return syscall.ForkExec("/proc/self/exe", []string{"reconciled-init"}, attr)
	}, cfg.NS.Join)
	if err != nil {
		sendMessage(sock, message{Error: "start container init: " + err.Error()})
		os.Exit(1)
	}
	if err := sendMessage(sock, message{Pid: pid}); err != nil {
		unix.Kill(pid, unix.SIGKILL)
	}
	sock.Close()
	stateDir := watchCreator(4, pid)
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
	if err := writeJSONAtomic(stateDir, exitFile, rec, false); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// watchCreator follows the lifeline fd until the creator says the
// container is created or the init exits, and returns the container's
// state directory ("" if the creator never named one). The creator first
// writes the state directory and a newline (a spare pair gets it when it
// is taken), then one byte once the container is recorded created. EOF
// before that byte means the creator died or gave up: the init is killed,
// so that nothing of a half-made container keeps running unseen.
func watchCreator(lifeline, pid int) string {
	defer unix.Close(lifeline)
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
			return stateDir()
		}
		if pfds[0].Revents == 0 {
			return stateDir() // the init exited
		}
		var b [512]byte
		n, err := unix.Read(lifeline, b[:])
		if err == unix.EINTR {
			continue
		}
		if n <= 0 {
			unix.Kill(pid, unix.SIGKILL)
			return stateDir()
		}
		buf = append(buf, b[:n]...)
		if dir := stateDir(); dir != "" {
			setTitle(filepath.Base(dir))
			if len(buf) > len(dir)+1 {
				return dir // created
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
	if len(here) == 0 {
		return start()
	}
	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the goroutine's exit ends the tainted thread.
		for _, j := range here {
			if err := setnsPath(j); err != nil {
				done <- result{0, err}
				return
			}
		}
		pid, err := start()
		done <- result{pid, err}
	}()
	r := <-done
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
