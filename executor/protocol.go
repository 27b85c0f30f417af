package executor

import (
	"encoding/json"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/seccomp"
)

// The creator, the monitor and the init talk over one stream socket pair:
// newline-separated JSON messages. The creator holds one end; the monitor
// gets the other as fd 3 and hands it on to the init (fd 3 there too).
//
//	creator -> monitor  monitorConfig, with the container's cgroup2
//	                    directory (SCM_RIGHTS) when IntoCgroup
//	monitor -> creator  message{Pid} or message{Error}; monitor closes its copy
//	creator -> init     one byte with fds 0-2 (SCM_RIGHTS), then initConfig
//	creator -> init     message{Ready} ("go": set up), then message{Placed}
//	                    (in its cgroup); with prestart or createRuntime
//	                    hooks one message{Ready, Placed} after the hooks
//	init    -> creator  message{Ready} or message{Error}; init closes it
//
// The monitor learns its container from the lifeline pipe (fd 4), whose
// write end the creator holds: a line with the state directory, then one
// byte once the container is recorded created (see watchCreator). A spare
// pair (WithSpares) has done the first two steps before its container
// exists.
//
// The machine monitor (pair.machine, executor/waiter's reaper started
// with waiter.MonitorEnv) takes no monitorConfig: its configuration is in
// its environment, and with IntoCgroup the creator sends it one byte with
// the cgroup2 directory (SCM_RIGHTS). It answers with the same messages.
// On its lifeline "created" is preceded by the path of the OOM counter
// file the reaper reads and a newline.
//
// EOF before Ready means the init died; the creator then tears down.

// stageEnv names the stage a re-exec'd binary is to run.
const stageEnv = "_RECONCILED_STAGE"

// initGoDebug is in the environment of the init and exec stages: without
// it the Go runtime (1.25 on) keeps its cgroup's CPU limit files open from
// its start, on the lowest free descriptors, where the extra files
// (--preserve-fds) go. The stages set GOMAXPROCS=1: the limit is moot.
const initGoDebug = "GODEBUG=containermaxprocs=0"

const (
	stageMonitor = "monitor"
	stageInit    = "init"
	stageExec    = "exec"   // a command run in a live container (exec.go)
	stageUserns  = "userns" // holds a user namespace for an idmapped mount (userns.go)
)

type monitorConfig struct {
	NS nsPlan `json:"ns"`
	// Spare: the pair is made ahead of time (WithSpares); the init then
	// warms its decoder while it waits (spareEnv).
	Spare bool `json:"spare,omitempty"`
	// NoReaper: wait as the Go monitor once the container is created
	// instead of becoming the reaper (Runtime.goMonitor, tests).
	NoReaper bool `json:"noReaper,omitempty"`
	// IntoCgroup: the config comes with an fd of the container's cgroup2
	// directory, which the init is cloned into (CLONE_INTO_CGROUP); the
	// creator sends it once the cgroup is made.
	IntoCgroup bool `json:"intoCgroup,omitempty"`
}

// spareEnv, set to 1 in a spare init's environment, makes it build its
// decoder's tables (warmDecoder) before it waits for its container. (Every
// init of the binary maps its executable in at its start: see
// internal/prefault.)
const spareEnv = "_RECONCILED_SPARE"

type initConfig struct {
	ID       string      `json:"id"`
	Bundle   string      `json:"bundle"`
	StateDir string      `json:"stateDir"`
	HostPid  int         `json:"hostPid"`
	NS       nsPlan      `json:"ns"`
	Spec     *specs.Spec `json:"spec"`
	// Seccomp is the spec's linux.seccomp compiled (the spec sent
	// leaves the profile out); nil: none.
	Seccomp *seccomp.Program `json:"seccomp,omitempty"`
	// Prepared: with a user namespace the creator made the rootfs and
	// the bind mounts (userns.go) and sent them after the stdio and the
	// extra files: the state directory, the rootfs, then the bind mounts
	// of spec.Mounts at these indexes.
	Prepared *preparedLayout `json:"prepared,omitempty"`
	// Console: the last of the extra files sent with stdio (before the
	// runtime's own, Prepared) is a socket on
	// which the init sends the master of the terminal it opens on the
	// container's devpts (CreateOptions.Console); it is no extra file.
	Console bool `json:"console,omitempty"`
}

type preparedLayout struct {
	Binds []int `json:"binds,omitempty"`
}

type message struct {
	Pid   int  `json:"pid,omitempty"`
	Ready bool `json:"ready,omitempty"`
	// Placed (creator -> init): the init is in its cgroup and
	// oom_score_adj is set.
	Placed bool `json:"placed,omitempty"`
	// InCgroup (monitor -> creator, with Pid): the init was cloned into
	// the cgroup2 directory it was sent (monitorConfig.IntoCgroup).
	InCgroup bool   `json:"inCgroup,omitempty"`
	Error    string `json:"error,omitempty"`
}

func init() {
	// The init stage changes namespaces and credentials of the thread that
	// runs main and finally execs from it: that must be one OS thread.
	if os.Getenv(stageEnv) == stageInit {
		runtime.LockOSThread()
	}
	// The monitor execs the reaper once the container is created: from
	// the main thread, so that the exec does not move the thread group's
	// leader (which a pidfd waiting for the monitor would see as an exit).
	if os.Getenv(stageEnv) == stageMonitor {
		runtime.LockOSThread()
	}
}

// MaybeRunStage runs a re-exec stage (container monitor or init) when the
// process was started as one, and never returns then. Otherwise it returns
// at once. The binary's main, and TestMain of every test binary that
// creates containers, must call it before anything else.
func MaybeRunStage() {
	stage, ok := os.LookupEnv(stageEnv)
	if !ok {
		return
	}
	os.Unsetenv(stageEnv)
	// A low collection target for the exec stage, which lives until it
	// execs the process. The monitor and the init set their own: none
	// while they set up, 20 once they wait in Go; most often neither
	// stays: they exec the reaper and the user's process.
	debug.SetGCPercent(20)
	switch stage {
	case stageMonitor:
		runMonitor()
	case stageInit:
		runInit()
	case stageExec:
		runExec()
	case stageUserns:
		runUsernsHolder()
	}
	os.Stderr.WriteString("reconciled: unknown stage " + stage + "\n")
	os.Exit(2)
}

func sendMessage(f io.Writer, m message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	return err
}
