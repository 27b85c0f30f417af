package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
)

// runcExecFlags are `runtime exec`'s flags beyond the daemon-level exec's:
// runc exec's.
type runcExecFlags struct {
	cwd, pidFile, process, consoleSocket string
	detach, noNewPrivs, ignorePaused     bool
	gids                                 []uint32
	caps                                 []string
	preserveFds                          int
	cgroups                              []string
	apparmor, label                      string
	consoleSize                          *specs.Box // from --process
}

func addRuncExecFlags(fs *flag.FlagSet) *runcExecFlags {
	f := &runcExecFlags{}
	fs.StringVar(&f.cwd, "cwd", "", "the working directory in the container")
	fs.StringVar(&f.pidFile, "pid-file", "", "write the process's PID (on the host) here")
	fs.StringVar(&f.process, "process", "", "the process, as the runtime spec's process JSON (args, env, cwd, user, terminal)")
	fs.StringVar(&f.process, "p", "", "same as --process")
	fs.StringVar(&f.consoleSocket, "console-socket", "", "with --tty: send the terminal's master to this unix socket")
	fs.BoolVar(&f.detach, "detach", false, "start the process and return")
	fs.BoolVar(&f.detach, "d", false, "same as --detach")
	fs.BoolVar(&f.noNewPrivs, "no-new-privs", false, "set no_new_privs for the process")
	gids := func(s string) error {
		g, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("want a numeric GID, got %q", s)
		}
		f.gids = append(f.gids, uint32(g))
		return nil
	}
	fs.Func("additional-gids", "an additional group ID (repeatable)", gids)
	fs.Func("g", "same as --additional-gids", gids)
	caps := func(s string) error { f.caps = append(f.caps, s); return nil }
	fs.Func("cap", "add a capability, CAP_NAME (repeatable)", caps)
	fs.Func("c", "same as --cap", caps)
	fs.IntVar(&f.preserveFds, "preserve-fds", 0, "pass this process's fds 3 .. 3+N-1 to the process as its fds 3, ...")
	fs.Func("cgroup", "run the process in an existing sub-cgroup of the container's: [CONTROLLER[,CONTROLLER...]:]PATH (repeatable with controllers; cgroup v2: PATH alone)", func(s string) error {
		f.cgroups = append(f.cgroups, s)
		return nil
	})
	fs.BoolVar(&f.ignorePaused, "ignore-paused", false, "exec into a paused container too: the process runs once it is resumed")
	fs.StringVar(&f.apparmor, "apparmor", "", "AppArmor profile (not supported: refused)")
	fs.StringVar(&f.label, "process-label", "", "SELinux label (not supported: refused)")
	return f
}

// apply puts the flags into o. What is asked for and cannot be done is
// refused, not dropped.
func (f *runcExecFlags) apply(root, id string, o *executor.ExecOptions) error {
	sub, err := subCgroupFlags(f.cgroups)
	if err != nil {
		return err
	}
	o.SubCgroups = sub
	o.IgnorePaused = f.ignorePaused
	switch {
	case f.apparmor != "":
		return errors.New("--apparmor: AppArmor is not supported")
	case f.label != "":
		return errors.New("--process-label: SELinux labels are not supported")
	}
	if f.process != "" {
		data, err := os.ReadFile(f.process)
		if err != nil {
			return fmt.Errorf("--process: %w", err)
		}
		var p specs.Process
		if err := json.Unmarshal(data, &p); err != nil {
			return fmt.Errorf("--process %s: not a runtime spec process: %w", f.process, err)
		}
		if len(p.Args) == 0 {
			return fmt.Errorf("--process %s: args is empty", f.process)
		}
		if len(o.Args) > 0 {
			return errors.New("--process FILE gives the command: give none after the ID")
		}
		o.Args, o.Env, o.Cwd, o.Terminal = p.Args, append(p.Env, o.Env...), p.Cwd, p.Terminal || o.Terminal
		if p.ExecCPUAffinity != nil {
			return fmt.Errorf("--process %s: execCPUAffinity is %w by this runtime (leave it out)", f.process, executor.ErrNotSupported)
		}
		u := p.User
		o.User = &u
		o.NoNewPrivileges = p.NoNewPrivileges
		o.Scheduler, o.IOPriority = p.Scheduler, p.IOPriority
		f.consoleSize = p.ConsoleSize
		if p.Capabilities != nil {
			o.Capabilities = append(o.Capabilities, p.Capabilities.Bounding...)
		}
	}
	if f.cwd != "" {
		o.Cwd = f.cwd
	}
	if f.noNewPrivs {
		o.NoNewPrivileges = true
	}
	o.Capabilities = append(o.Capabilities, f.caps...)
	if len(f.gids) > 0 {
		if o.User == nil {
			// The container's user, with these groups.
			st, err := executor.ReadState(root, id)
			if err != nil {
				return err
			}
			spec, err := executor.LoadSpec(st.Bundle)
			if err != nil {
				return err
			}
			u := specs.User{}
			if spec.Process != nil {
				u = spec.Process.User
			}
			o.User = &u
		}
		o.User.AdditionalGids = f.gids
	}
	if o.Terminal && f.detach && f.consoleSocket == "" {
		return errors.New("--tty with --detach needs --console-socket")
	}
	extra, err := preservedFiles(f.preserveFds)
	if err != nil {
		return err
	}
	o.ExtraFiles = extra
	return nil
}

// subCgroupFlags reads --cgroup's values as runc exec does: "PATH" alone
// (the only --cgroup given) is one path for every hierarchy (key ""),
// "CTRL[,CTRL...]:PATH" a path for each named controller.
func subCgroupFlags(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	paths := make(map[string]string, len(args))
	for _, a := range args {
		ctrls, p, hasCtrl := strings.Cut(a, ":")
		switch {
		case strings.Contains(p, ":"):
			return nil, fmt.Errorf("--cgroup %s: want [CONTROLLER:]PATH", a)
		case !hasCtrl:
			if len(args) != 1 {
				return nil, fmt.Errorf("--cgroup %s: with more than one --cgroup each needs its CONTROLLER: prefix", a)
			}
			paths[""] = a
		default:
			for _, c := range strings.Split(ctrls, ",") {
				paths[c] = p
			}
		}
	}
	return paths, nil
}

// preservedFiles is --preserve-fds N: this process's fds 3 .. 3+N-1, as
// runc passes them (LISTEN_FDS style). Each must have been inherited: a
// descriptor that survived the exec of this program has close-on-exec
// clear, while one this process opened itself (the Go runtime keeps its
// cgroup's CPU limit files open from the start) has it set.
func preservedFiles(n int) ([]*os.File, error) {
	if n < 0 || n > executor.MaxExtraFiles {
		return nil, fmt.Errorf("--preserve-fds %d: give a number from 0 to %d", n, executor.MaxExtraFiles)
	}
	files := make([]*os.File, 0, n)
	for fd := 3; fd < 3+n; fd++ {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			return nil, fmt.Errorf("--preserve-fds %d: fd %d was not passed to this process (open fds 3 to %d in the caller, or pass a smaller number)", n, fd, 2+n)
		}
		files = append(files, os.NewFile(uintptr(fd), "preserved-fd-"+strconv.Itoa(fd)))
	}
	return files, nil
}

// runcExec is `runtime exec` with --detach, --console-socket or
// --pid-file: the terminal (with --tty) goes to the console socket, the
// PID to the file; detached, it returns at once, else it waits and
// returns the process's exit code.
func runcExec(ctx context.Context, rt *executor.Runtime, id string, o executor.ExecOptions, f *runcExecFlags) (_ int, err error) {
	if !o.Terminal {
		o.Stdin, o.Stdout, o.Stderr = os.Stdin, os.Stdout, os.Stderr
	}
	p, err := rt.Exec(ctx, id, o)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			// As runc: a process whose start could not be completed (its
			// terminal not sent, its PID file not written) does not run on.
			p.Signal(unix.SIGKILL)
			p.Wait(context.WithoutCancel(ctx))
		}
	}()
	if p.Console != nil {
		defer p.Console.Close()
		if f.consoleSocket == "" {
			// In the foreground: the caller's terminal.
			console, err := startConsole(p.Console, os.Stdin, os.Stdout)
			if err != nil {
				return 0, err
			}
			defer console.restore()
			defer console.finish()
		}
		if b := f.consoleSize; b != nil {
			if err := unix.IoctlSetWinsize(int(p.Console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(b.Height), Col: uint16(b.Width)}); err != nil {
				return 0, os.NewSyscallError("ioctl(TIOCSWINSZ)", err)
			}
		}
		if f.consoleSocket != "" {
			if err := sendConsole(f.consoleSocket, p.Console); err != nil {
				return 0, err
			}
		}
	}
	if f.pidFile != "" {
		if err := writePidFile(f.pidFile, p.Pid); err != nil {
			return 0, err
		}
	}
	if f.detach {
		return 0, nil
	}
	st, err := p.Wait(context.WithoutCancel(ctx))
	if err != nil {
		return 0, err
	}
	return st.Code, nil
}

// writePidFile writes pid to path atomically (a temp file renamed), as
// runc does: a reader never sees it half written.
func writePidFile(path string, pid int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("--pid-file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--pid-file: %w", err)
	}
	return nil
}
