package executor

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor/waiter"
)

// InitAnnotation, set to "true" in a spec, makes the container's first
// process the init (executor/waiter's init_amd64.S) with the spec's
// process as its child: docker's --init. The daemon sets it for a
// manifest's spec.init (desired.AnnotationInit names the same key).
const InitAnnotation = "dev.reconciled.init"

// wantsInit reports whether spec asks for the init.
func wantsInit(s *specs.Spec) bool { return s != nil && s.Annotations[InitAnnotation] == "true" }

// setupInit, for a spec that asks for the init, opens the init's sealed
// memfd (close-on-exec) and returns the path and argv to exec instead of
// path and argv (waiter.InitArgs: the waiter, or execProcess, then execs
// the init, which runs path as its child). Otherwise it changes nothing.
// It runs before the init reports ready, so that a failure fails create.
func setupInit(s *specs.Spec, path string, argv []string) (string, []string, error) {
	if !wantsInit(s) {
		return path, argv, nil
	}
	if !waiter.InitAvailable() {
		return "", nil, fmt.Errorf("init: true: reconciled has no init for %s yet (only amd64); remove init: true", runtime.GOARCH)
	}
	fd, err := waiter.InitMemfd()
	if err != nil {
		return "", nil, fmt.Errorf("init: true: %w", err)
	}
	path, argv = waiter.InitArgs(fd, path, argv)
	return path, argv, nil
}

// execProcess execs the container's process, or the init with it when
// setupInit gave an empty path: through /proc when the container has one
// (syscall.Exec gives back the RLIMIT_NOFILE the Go runtime raised), by
// the fd otherwise. It returns only on failure.
func execProcess(path string, argv, env []string) error {
	if path != "" {
		return unix.Exec(path, argv, env)
	}
	fd, err := strconv.Atoi(argv[0])
	if err != nil {
		return fmt.Errorf("init fd %q: %w", argv[0], err)
	}
	err = syscall.Exec("/proc/self/fd/"+argv[0], argv[1:], env)
	return fmt.Errorf("the init (fd) for %s: %w", argv[1], errors.Join(err, waiter.ExecInit(fd, argv[1], argv[2:], env)))
}

// passInitFd lets the init's memfd (setupInit) through the exec of the
// waiter, which marks it close-on-exec again before it execs the init.
func passInitFd(path string, argv []string) error {
	if path != "" {
		return nil
	}
	fd, err := strconv.Atoi(argv[0])
	if err != nil {
		return fmt.Errorf("init fd %q: %w", argv[0], err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("init fd: %w", os.NewSyscallError("fcntl", err))
	}
	return nil
}
