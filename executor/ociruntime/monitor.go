package ociruntime

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/atomicfile"
)

// monitorEnv marks a process started as a container monitor; its value is
// the monitor's configuration as JSON.
const monitorEnv = "_RECONCILED_OCI_MONITOR"

// Files in a container's state directory besides the native ones.
const (
	pidFile        = "init.pid"    // written by the runtime's create
	runtimeLogFile = "runtime.log" // the runtime's own --log
)

// The native executor's file names (executor/state.go), which
// executor.ReadState reads.
const (
	stateFile = "state.json"
	exitFile  = "exit.json"
	fifoFile  = "exec.fifo"
)

// monitorConfig is what the monitor gets from the creator.
type monitorConfig struct {
	Runtime    string   `json:"runtime"` // binary path
	GlobalArgs []string `json:"globalArgs"`
	ID         string   `json:"id"`
	Bundle     string   `json:"bundle"`
	StateDir   string   `json:"stateDir"`
}

// monitorMessage is the monitor's one report to the creator.
type monitorMessage struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

// exitRecord is the native executor's exit.json.
type exitRecord struct {
	Finished   time.Time `json:"finished"`
	ExitCode   int       `json:"exitCode"`
	ExitSignal string    `json:"exitSignal,omitempty"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
}

func init() {
	cfg, ok := os.LookupEnv(monitorEnv)
	if !ok {
		return
	}
	os.Unsetenv(monitorEnv)
	runMonitor(cfg)
	os.Exit(0)
}

// runMonitor runs in the monitor process; fd 3 is the report pipe, fd 4
// the creator's lifeline, 1 and 2 the container's log.
func runMonitor(raw string) {
	report := os.NewFile(3, "report")
	fail := func(format string, args ...any) {
		json.NewEncoder(report).Encode(monitorMessage{Error: fmt.Sprintf(format, args...)})
		os.Exit(1)
	}
	var cfg monitorConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fail("monitor: bad configuration: %v", err)
	}
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fail("monitor: PR_SET_CHILD_SUBREAPER: %v", err)
	}
	logPath := filepath.Join(cfg.StateDir, runtimeLogFile)
	pidPath := filepath.Join(cfg.StateDir, pidFile)
	args := append(append([]string{"--log", logPath}, cfg.GlobalArgs...),
		"create", "--bundle", cfg.Bundle, "--pid-file", pidPath, cfg.ID)
	cmd := exec.Command(cfg.Runtime, args...)
	// The runtime hands its stdio to the container's init: the log.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fail("%s create: %v%s", filepath.Base(cfg.Runtime), err, runtimeLogTail(logPath))
	}
	data, err := os.ReadFile(pidPath)
	if err != nil {
		fail("%s create wrote no pid file: %v", filepath.Base(cfg.Runtime), err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		fail("%s create wrote a bad pid file %q", filepath.Base(cfg.Runtime), data)
	}
	if err := json.NewEncoder(report).Encode(monitorMessage{Pid: pid}); err != nil {
		unix.Kill(pid, unix.SIGKILL)
	}
	report.Close()
	var b [1]byte
	if n, _ := io.ReadFull(os.NewFile(4, "lifeline"), b[:]); n != 1 {
		// The creator died or gave up before recording the container:
		// remove it, so that nothing unseen keeps running.
		exec.Command(cfg.Runtime, append(append([]string{}, cfg.GlobalArgs...), "delete", "--force", cfg.ID)...).Run()
	}
	unix.Close(4)
	// Hold no reference to the container's log.
	if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			unix.Dup3(int(null.Fd()), fd, 0)
		}
		null.Close()
	}
	rec := exitRecord{ExitCode: 255}
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// ECHILD: the init never became our child (a runtime that
			// does not fork its init from create). Wait for it to go;
			// its status cannot be known.
			waitGone(pid)
			break
		}
		if got != pid {
			continue // another orphan
		}
		switch {
		case ws.Signaled():
			rec.ExitSignal = unix.SignalName(ws.Signal())
			rec.ExitCode = 128 + int(ws.Signal())
		default:
			rec.ExitCode = ws.ExitStatus()
		}
		break
	}
	rec.Finished = time.Now().UTC()
	rec.OOMKilled = oomKilledSince(cfg.StateDir)
	if err := atomicfile.WriteJSON(cfg.StateDir, exitFile, rec, 0o600, atomicfile.SyncDir); err != nil {
		os.Exit(1)
	}
}

// waitGone returns once pid no longer exists.
func waitGone(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	for {
		_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
		if err != unix.EINTR {
			return
		}
	}
}

// runtimeLogTail returns ": " and the last messages of the runtime's
// --log file ("" when it has none).
func runtimeLogTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var msgs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg != "" {
			if e.Level == "error" || e.Level == "fatal" || e.Level == "" {
				msgs = append(msgs, e.Msg)
			}
			continue
		}
		if strings.TrimSpace(line) != "" {
			msgs = append(msgs, strings.TrimSpace(line))
		}
	}
	if len(msgs) > 3 {
		msgs = msgs[len(msgs)-3:]
	}
	if len(msgs) == 0 {
		return ""
	}
	return ": " + strings.Join(msgs, "; ")
}

// oomKilledSince reports whether the OOM killer acted in the container's
// cgroup since create, from the count the creator recorded in the state
// (the runtime removes the cgroup only at delete, so it is still there).
func oomKilledSince(stateDir string) bool {
	data, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if err != nil {
		return false
	}
	var st struct {
		CgroupPaths     map[string]string `json:"cgroupPaths"`
		OOMKillsAtStart uint64            `json:"oomKillsAtStart"`
	}
	if json.Unmarshal(data, &st) != nil {
		return false
	}
	n, ok := oomKills(st.CgroupPaths)
	return ok && n > st.OOMKillsAtStart
}

// oomKills reads the cgroup's oom_kill counter: memory.events on cgroup
// v2, memory.oom_control on v1.
func oomKills(paths map[string]string) (uint64, bool) {
	if p, ok := paths[""]; ok {
		if n, ok := keyedCounter(filepath.Join(p, "memory.events"), "oom_kill"); ok {
			return n, true
		}
	}
	if p, ok := paths["memory"]; ok {
		return keyedCounter(filepath.Join(p, "memory.oom_control"), "oom_kill")
	}
	return 0, false
}

// keyedCounter reads "key value" lines and returns key's value.
func keyedCounter(path, key string) (uint64, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
