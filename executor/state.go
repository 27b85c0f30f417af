package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/waiter"
	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/sys"
)

// Status is a container's status as the runtime spec names it.
type Status string

const (
	StatusCreating Status = "creating"
	StatusCreated  Status = "created"
	StatusRunning  Status = "running"
	StatusStopped  Status = "stopped"
)

// DefaultRoot is where the CLI keeps container state unless told otherwise.
const DefaultRoot = "/run/reconciled/runtime"

// Files in a container's state directory (<root>/<id>/).
const (
	stateFile = "state.json" // State, written by create and start
	exitFile  = "exit.json"  // exitRecord, written once by the monitor
	fifoFile  = "exec.fifo"  // exists from create until start
	// monitorErrFile says why the monitor waits in Go instead of as the
	// reaper: its fds 0-2 are /dev/null, so it leaves the reason here and
	// Delete logs it.
	monitorErrFile = "monitor.err"
)

// State is what the runtime knows about one container. Its first six fields
// are the runtime spec's State; the rest are this runtime's additions. It is
// read from disk with ReadState, which also works out Status from the live
// system: a State is never trusted to say "running" on its own.
type State struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      Status            `json:"status"`
	Pid         int               `json:"pid,omitempty"`
	Bundle      string            `json:"bundle"`
	Annotations map[string]string `json:"annotations,omitempty"`

	// PidStartTime is field 22 of /proc/<Pid>/stat (clock ticks since
	// boot) at create: a process with the same PID and another start time
	// is not the container.
	PidStartTime uint64 `json:"pidStartTime,omitempty"`
	// MonitorPid is the process that waits for the init and records its
	// exit status; MonitorStartTime its start time like PidStartTime.
	MonitorPid       int    `json:"monitorPid,omitempty"`
	MonitorStartTime uint64 `json:"monitorStartTime,omitempty"`
	// CallerReaps: the init was left to the creator's caller to reap, as
	// runc's is (CreateOptions.CallerReaps): the monitor exited once the
	// container was created, and no exit status is recorded (a stopped
	// container has none). Waits are on the init itself.
	CallerReaps bool `json:"callerReaps,omitempty"`
	// RuntimeExeDev and RuntimeExeIno identify the runtime binary the init
	// runs until it execs the user's process (the monitor runs it only
	// until the container is created: it then becomes the reaper). Zero in
	// states written by versions before the reaper: the monitor's own
	// executable is that binary there.
	RuntimeExeDev uint64 `json:"runtimeExeDev,omitempty"`
	RuntimeExeIno uint64 `json:"runtimeExeIno,omitempty"`

	Rootfs   string    `json:"rootfs,omitempty"`
	Created  time.Time `json:"created,omitzero"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`

	// Exited is true once the monitor recorded the exit; then ExitCode is
	// the shell-style status (128+signal for a killed process), ExitSignal
	// the signal's name if a signal ended it, and OOMKilled whether the
	// kernel's OOM killer acted in the container's cgroup.
	Exited     bool   `json:"exited,omitempty"`
	ExitCode   int    `json:"exitCode"`
	ExitSignal string `json:"exitSignal,omitempty"`
	OOMKilled  bool   `json:"oomKilled,omitempty"`

	CgroupDriver string            `json:"cgroupDriver,omitempty"`
	CgroupPath   string            `json:"cgroupPath,omitempty"` // as given to the driver
	CgroupPaths  map[string]string `json:"cgroupPaths,omitempty"`
	// OOMKillsAtStart is the cgroup's oom_kill count when the container
	// was created, so that a reused cgroup's history is not blamed on it.
	OOMKillsAtStart uint64 `json:"oomKillsAtStart,omitempty"`
	// Hooks keeps the spec's poststart and poststop hooks for the
	// processes that run start and delete.
	Hooks *specs.Hooks `json:"hooks,omitempty"`
}

// exitRecord is what the monitor writes when the init has exited.
type exitRecord struct {
	Finished   time.Time `json:"finished"`
	ExitCode   int       `json:"exitCode"`
	ExitSignal string    `json:"exitSignal,omitempty"`
	OOMKilled  bool      `json:"oomKilled,omitempty"`
}

// exited returns st stopped with ex's exit.
func (st State) exited(ex exitRecord) *State {
	st.Status = StatusStopped
	st.Exited = true
	st.Finished = ex.Finished
	st.ExitCode = ex.ExitCode
	st.ExitSignal = ex.ExitSignal
	st.OOMKilled = ex.OOMKilled
	return &st
}

// reaperExit turns the reaper's record (waiter.ParseExit) into an
// exitRecord, as the Go monitor would have written it: 128+signal for a
// signal, 255 when the wait failed, OOM killed when the counter in the
// record is above the one taken when the container was created.
func reaperExit(data []byte, oomAtStart uint64) (exitRecord, error) {
	e, err := waiter.ParseExit(data)
	if err != nil {
		return exitRecord{}, err
	}
	ex := exitRecord{Finished: time.Unix(e.Sec, e.Nsec).UTC(), ExitCode: 255}
	switch {
	case !e.HasStatus:
	case e.Status.Signaled():
		ex.ExitSignal = unix.SignalName(e.Status.Signal())
		ex.ExitCode = 128 + int(e.Status.Signal())
	default:
		ex.ExitCode = e.Status.ExitStatus()
	}
	if n, ok := keyedCounter(e.OOMFile, "oom_kill"); ok && n > oomAtStart {
		ex.OOMKilled = true
	}
	return ex, nil
}

// keyedCounter returns key's value in "key value" lines.
func keyedCounter(content, key string) (uint64, bool) {
	for line := range strings.Lines(content) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// StateDir is the directory that holds container id's state under root.
func StateDir(root, id string) string { return filepath.Join(root, id) }

// StatePath is container id's state file under root. The executor replaces
// it whole (rename), but someone else may rewrite it in place.
func StatePath(root, id string) string { return filepath.Join(root, id, stateFile) }

// ReadState reads container id's state under root and works out its status:
// stopped once the monitor recorded the exit or once the init PID is gone or
// belongs to another process (start time differs); created while the exec
// fifo is there; running otherwise. It returns an error wrapping ErrNotExist
// when there is no such container, and one wrapping ErrBadState when its
// state or exit record cannot be parsed.
func ReadState(root, id string) (*State, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	dir := StateDir(root, id)
	data, err := sys.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, err2 := os.Stat(dir); err2 == nil {
				// Directory made, first state not yet written.
				return &State{OCIVersion: specs.Version, ID: id, Status: StatusCreating}, nil
			}
			return nil, fmt.Errorf("container %s: %w", id, ErrNotExist)
		}
		return nil, fmt.Errorf("unable to read state of container %s: %w", id, err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("unable to parse state of container %s: %w: %w", id, ErrBadState, err)
	}
	if data, err := sys.ReadFile(filepath.Join(dir, exitFile)); err == nil {
		var ex exitRecord
		if err := json.Unmarshal(data, &ex); err != nil {
			return nil, fmt.Errorf("unable to parse exit record of container %s: %w: %w", id, ErrBadState, err)
		}
		return st.exited(ex), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("unable to read exit record of container %s: %w", id, err)
	}
	if data, err := sys.ReadFile(filepath.Join(dir, waiter.ExitFile)); err == nil {
		ex, err := reaperExit(data, st.OOMKillsAtStart)
		if err != nil {
			return nil, fmt.Errorf("unable to parse exit record of container %s: %w: %w", id, ErrBadState, err)
		}
		return st.exited(ex), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("unable to read exit record of container %s: %w", id, err)
	}
	if st.Status == StatusCreating || st.Pid == 0 {
		return &st, nil
	}
	if !proc.Running(st.Pid, st.PidStartTime) {
		st.Status = StatusStopped
		return &st, nil
	}
	if _, err := os.Lstat(filepath.Join(dir, fifoFile)); err == nil {
		st.Status = StatusCreated
	} else {
		st.Status = StatusRunning
	}
	return &st, nil
}

// waited is the process whose end means the container's exit is known:
// the monitor, which records it, or the init when no one records it
// (CallerReaps).
func (st *State) waited() (pid int, start uint64) {
	if st.CallerReaps {
		return st.Pid, st.PidStartTime
	}
	return st.MonitorPid, st.MonitorStartTime
}

// List reads the state of every container under root, sorted by ID. A
// directory whose state cannot be read is reported in the joined error; the
// others are still returned.
func List(root string) ([]*State, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("unable to list %s: %w", root, err)
	}
	var out []*State
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || ValidateID(e.Name()) != nil {
			continue
		}
		st, err := ReadState(root, e.Name())
		if err != nil {
			if errors.Is(err, ErrNotExist) {
				continue // deleted meanwhile
			}
			errs = append(errs, err)
			continue
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, errors.Join(errs...)
}

// writeFileAtomic replaces dir/name with data (mode 0600) by a rename: a
// reader sees the old or the new content, never a part. Nothing is
// fsynced, as runc and crun do not: every file here describes processes
// and cgroups that a power cut or a kernel crash, the only losses an fsync
// guards against, ends as well. After one, what the file says is of a
// container that is gone, and a state.json that is empty or cut short
// is unreadable state, which delete --force and the daemon already handle
// by the container's cgroup (README, "One copy, one owner"). The default
// root is on a tmpfs (/run), where an fsync does nothing; on a disk each
// took up to 0.5 ms, four in a create (with the reaper's, a runtime
// create+start+kill+delete went from 52.7 to 51.0 ms against crun's 51.2:
// bench/runtimebench -base, n=100, 2-core VM, root on ext4).
func writeFileAtomic(dir, name string, data []byte) error {
	return atomicfile.Write(dir, name, data, 0o600, atomicfile.NoSync)
}

func writeJSONAtomic(dir, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, name, data)
}

// ociState is the runtime spec's State of st, as hooks get it on stdin.
func ociState(st *State) []byte {
	data, _ := json.Marshal(specs.State{
		Version: specs.Version, ID: st.ID, Status: specs.ContainerState(st.Status), Pid: st.Pid,
		Bundle: st.Bundle, Annotations: st.Annotations,
	})
	return data
}
