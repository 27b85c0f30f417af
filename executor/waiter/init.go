package waiter

import (
	"strconv"
)

// InitAvailable reports whether this architecture has the init: the PID 1
// of a container whose manifest says init: true (init_amd64.S).
func InitAvailable() bool { return len(initCode) > 0 }

// InitMemfd returns a close-on-exec, sealed memfd holding the init. A
// container sees it only as /proc/1/exe, and cannot write it.
func InitMemfd() (int, error) { return memfd("reconciled-init", elf(initCode)) }

// InitArgs are the path and argv that make the waiter (Exec) exec the init
// in fd initFd instead of a program, and the init run path with argv: an
// empty path, the fd in decimal, path, argv.
func InitArgs(initFd int, path string, argv []string) (string, []string) {
	return "", append([]string{strconv.Itoa(initFd), path}, argv...)
}

// ExecInit replaces the calling process with the init in fd, which runs
// path with argv and env as its child. The caller must have marked every
// other descriptor above 2 close-on-exec. It returns only on failure.
func ExecInit(fd int, path string, argv, env []string) error {
	return execveat("init", fd, append([]string{path}, argv...), env)
}

// ProbeServerAvailable reports whether this architecture has the probe
// server (probe_amd64.S): a process in a container that runs exec probes'
// commands as its children, so that a probe starts one process, not two.
func ProbeServerAvailable() bool { return len(probeCode) > 0 }

// ProbeServerMemfd returns a close-on-exec, sealed memfd holding the probe
// server.
func ProbeServerMemfd() (int, error) { return memfd("reconciled-probe", elf(probeCode)) }

// ExecProbeServer replaces the calling process with the probe server in
// fd, with env as its children's environment (see probe_amd64.S for fds
// 0-2). The caller must have marked every other descriptor above 2
// close-on-exec. It returns only on failure.
func ExecProbeServer(fd int, env []string) error {
	return execveat("probe server", fd, []string{"reconciled-probe"}, env)
}
