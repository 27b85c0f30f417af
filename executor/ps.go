package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"reconciled.dev/reconciled/internal/proc"
)

// Process roles in ProcessInfo.Role.
const (
	RoleInit  = "init"  // the container's init (its process.args)
	RoleExec  = "exec"  // started by Exec
	RoleChild = "child" // started by a process of the container
)

// ProcessInfo is one process of a container, as Ps sees it.
type ProcessInfo struct {
	// Pid is the PID on the host, NSPid in the container's PID namespace
	// (the last NSpid of /proc/PID/status; equal to Pid without one).
	Pid   int `json:"pid"`
	NSPid int `json:"nsPid"`
	PPid  int `json:"ppid"`
	// UID and GID are the effective IDs; User is the UID's name in the
	// container's /etc/passwd, empty if it has none.
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	User string `json:"user,omitempty"`
	// State is the kernel's state letter (R, S, D, T, Z, ...) and Zombie
	// whether the process has exited and waits to be reaped.
	State  string `json:"state"`
	Zombie bool   `json:"zombie,omitempty"`
	// Command is the command line, or [comm] for a process without one.
	Command string `json:"command"`
	// Role says who started it: RoleInit, RoleExec or RoleChild.
	Role string `json:"role"`
}

// Ps lists every process in container id's cgroup, sorted by host PID.
func (r *Runtime) Ps(ctx context.Context, id string) ([]ProcessInfo, error) {
	st, err := ReadState(r.root, id)
	if err != nil {
		return nil, err
	}
	m, err := r.cgroupOf(st)
	if err != nil {
		return nil, fmt.Errorf("ps of container %s: %w", id, err)
	}
	if m == nil {
		return nil, fmt.Errorf("ps of container %s: it has no cgroup to find its processes in", id)
	}
	pids, err := m.Procs(ctx)
	if err != nil {
		return nil, fmt.Errorf("ps of container %s: %w", id, err)
	}
	execs := readExecRecords(filepath.Join(StateDir(r.root, id), execsDir))
	users := readPasswd("/proc/" + strconv.Itoa(st.Pid) + "/root/etc/passwd")
	out := make([]ProcessInfo, 0, len(pids))
	for _, pid := range pids {
		pi, err := readProcessInfo(pid)
		if err != nil {
			continue // exited meanwhile
		}
		start, _, _ := proc.StartTime(pid)
		switch {
		case pid == st.Pid && start == st.PidStartTime:
			pi.Role = RoleInit
		case execs[pid] != 0 && execs[pid] == start:
			pi.Role = RoleExec
		default:
			pi.Role = RoleChild
		}
		pi.User = users[pi.UID]
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pid < out[j].Pid })
	return out, nil
}

// readExecRecords maps the PIDs recorded by Exec to their start times.
func readExecRecords(dir string) map[int]uint64 {
	out := map[int]uint64{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var rec execRecord
		if json.Unmarshal(data, &rec) == nil && rec.Pid > 0 {
			out[rec.Pid] = rec.StartTime
		}
	}
	return out
}

// readProcessInfo reads /proc/PID/status and cmdline.
func readProcessInfo(pid int) (ProcessInfo, error) {
	base := "/proc/" + strconv.Itoa(pid)
	data, err := os.ReadFile(base + "/status")
	if err != nil {
		return ProcessInfo{}, err
	}
	pi, err := parseStatus(data)
	if err != nil {
		return pi, fmt.Errorf("%s/status: %w", base, err)
	}
	pi.Pid = pid
	if pi.NSPid == 0 {
		pi.NSPid = pid
	}
	cmd, _ := os.ReadFile(base + "/cmdline")
	cmd = bytes.TrimRight(cmd, "\x00")
	if len(cmd) > 0 {
		pi.Command = string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
	}
	return pi, nil
}

// parseStatus reads the fields of /proc/PID/status that ProcessInfo has;
// Command is [Name] (a kernel thread or zombie has no command line).
func parseStatus(data []byte) (ProcessInfo, error) {
	var pi ProcessInfo
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "Name":
			pi.Command = "[" + strings.TrimSpace(v) + "]"
		case "State":
			pi.State = f[0]
			pi.Zombie = f[0] == "Z" || f[0] == "X"
			seen++
		case "PPid":
			pi.PPid, _ = strconv.Atoi(f[0])
		case "Uid":
			if len(f) > 1 {
				pi.UID, _ = strconv.Atoi(f[1])
			}
			seen++
		case "Gid":
			if len(f) > 1 {
				pi.GID, _ = strconv.Atoi(f[1])
			}
		case "NSpid":
			pi.NSPid, _ = strconv.Atoi(f[len(f)-1])
		}
	}
	if seen < 2 {
		return pi, errors.New("no State or Uid line")
	}
	return pi, nil
}

// readPasswd maps UIDs to names from a passwd file; empty if unreadable.
func readPasswd(path string) map[int]string {
	out := map[int]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 {
			continue
		}
		if uid, err := strconv.Atoi(fields[2]); err == nil {
			if _, dup := out[uid]; !dup {
				out[uid] = fields[0]
			}
		}
	}
	return out
}
