package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/statedir"
)

// exitTimedOut is exec's exit code when --timeout killed the command, as
// timeout(1) does.
const exitTimedOut = 124

const execSynopsis = "[-t] [-e KEY=VAL] [--user UID[:GID]] [--timeout DUR] NAME -- CMD [ARG...]"

// exitExecFailed is runtime exec's exit code when the runtime fails
// (the container is missing or stopped, the command cannot start, the
// PID file cannot be written): runc's 255, apart from any exit code of
// the command's own.
const exitExecFailed = 255

// runcExecEnv is what `runtime exec` takes from runc's global flags: the
// logger (--log, --log-format, --debug), and report, which puts a failure
// in --log's file too.
type runcExecEnv struct {
	logger *slog.Logger
	report func(error)
}

// execCommand is `exec` (root empty: the daemon's --state; rx nil) and
// `runtime exec` (root: the runtime's --root; rx: runc's globals).
func execCommand(ctx context.Context, name, root string, args []string, stdout, stderr io.Writer, rx *runcExecEnv) int {
	synopsis := name + " " + strings.Replace(execSynopsis, "NAME", "ID", 1)
	if root == "" {
		synopsis = name + " [--state DIR] " + execSynopsis
	}
	fs := newFlagSet(name, synopsis, stderr)
	var state *string
	if root == "" {
		state = fs.String("state", statedir.DefaultState, "the daemon's state directory")
	}
	tty := fs.Bool("t", false, "allocate a pseudo-terminal in the container")
	fs.BoolVar(tty, "tty", false, "same as -t")
	var env []string
	fs.Func("e", "set an environment variable KEY=VAL (repeatable)", func(s string) error {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=VAL, got %q", s)
		}
		env = append(env, s)
		return nil
	})
	fs.Func("env", "same as -e", func(s string) error { return fs.Lookup("e").Value.Set(s) })
	user := fs.String("user", "", "run as UID[:GID] (numeric) instead of the container's user")
	fs.StringVar(user, "u", "", "same as --user")
	timeout := fs.Duration("timeout", 0, "kill the command after this long (exit code 124)")
	var rf *runcExecFlags
	if root != "" {
		rf = addRuncExecFlags(fs)
	}
	id, cmd, ok := parseExecArgs(fs, args, func() bool { return rf != nil && rf.process != "" })
	if !ok {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "reconciled %s: %v\n", name, err)
		if rx != nil {
			rx.report(err)
			return exitExecFailed
		}
		return 1
	}
	var opts []executor.Option
	if rx != nil {
		opts = append(opts, executor.WithLogger(rx.logger))
	}
	if root == "" {
		root = statedir.Layout(*state).Runtime()
	}
	o := executor.ExecOptions{Args: cmd, Env: env, Terminal: *tty}
	if *user != "" {
		u, err := parseUser(*user)
		if err != nil {
			return fail(err)
		}
		o.User = u
	}
	rt, err := executor.New(root, opts...)
	if err != nil {
		return fail(err)
	}
	if rf != nil {
		if err := rf.apply(root, id, &o); err != nil {
			return fail(err)
		}
		if rf.detach || rf.consoleSocket != "" || rf.pidFile != "" || rf.consoleSize != nil {
			code, err := runcExec(ctx, rt, id, o, rf)
			if err != nil {
				return fail(err)
			}
			return code
		}
	}
	code, err := runExec(ctx, name, rt, id, o, *timeout, stdout, stderr)
	if err != nil {
		return fail(err)
	}
	return code
}

// parseExecArgs splits flags, NAME and the command: `NAME -- CMD ARG...`,
// or without "--" everything after NAME is the command (flags go before
// NAME then).
// With noCmd (exec --process FILE gives it) NAME alone is enough.
func parseExecArgs(fs *flag.FlagSet, args []string, noCmd func() bool) (string, []string, bool) {
	for i, a := range args {
		if a == "--" {
			pos, err := parseInterspersed(fs, args[:i])
			if err != nil {
				return "", nil, false
			}
			if len(pos) != 1 || i+1 >= len(args) {
				fs.Usage()
				return "", nil, false
			}
			return pos[0], args[i+1:], true
		}
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, false
	}
	rest := fs.Args()
	if noCmd() && len(rest) == 1 {
		return rest[0], nil, true
	}
	if len(rest) < 2 {
		fs.Usage()
		return "", nil, false
	}
	return rest[0], rest[1:], true
}

// parseUser reads UID[:GID].
func parseUser(s string) (*specs.User, error) {
	us, gs, hasGID := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("--user %q: want a numeric UID[:GID]", s)
	}
	u := &specs.User{UID: uint32(uid)}
	if hasGID {
		gid, err := strconv.ParseUint(gs, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: want a numeric UID[:GID]", s)
		}
		u.GID = uint32(gid)
	}
	return u, nil
}

// runExec runs the command, passes stdio (or the terminal) through and
// signals on, and returns the command's exit code.
func runExec(ctx context.Context, name string, rt *executor.Runtime, id string, o executor.ExecOptions, timeout time.Duration, stdout, stderr io.Writer) (int, error) {
	// Signals go to the command, not to us: a cancelled ctx does not stop
	// it (the terminal's Ctrl-C reaches it through the pty or the process
	// group).
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
	defer signal.Stop(sigc)
	ctx = context.WithoutCancel(ctx)

	outF, doneOut := asFile(stdout, os.Stdout)
	defer doneOut()
	errF, doneErr := asFile(stderr, os.Stderr)
	defer doneErr()
	if !o.Terminal {
		o.Stdin, o.Stdout, o.Stderr = os.Stdin, outF, errF
	}
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	p, err := rt.Exec(setupCtx, id, o)
	cancel()
	if err != nil {
		return 0, err
	}
	var console *consoleCopy
	if o.Terminal {
		if console, err = startConsole(p.Console, os.Stdin, outF); err != nil {
			p.Signal(unix.SIGKILL)
			p.Wait(ctx)
			return 0, err
		}
		defer console.restore()
	}

	waitCtx, cancelWait := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		waitCtx, cancelWait = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("timed out after %s", timeout))
	}
	defer cancelWait()
	stopForwarding := forwardSignals(sigc, console, func(s syscall.Signal) { p.Signal(s) })
	st, err := p.Wait(waitCtx)
	stopForwarding()
	if err != nil && waitCtx.Err() != nil && ctx.Err() == nil {
		// --timeout: kill it, reap it, say so.
		p.Signal(unix.SIGKILL)
		if _, err := p.Wait(ctx); err != nil {
			return 0, err
		}
		if console != nil {
			console.finish()
			console.restore()
		}
		fmt.Fprintf(stderr, "reconciled %s: %s: the command timed out after %s and was killed\n", name, id, timeout)
		return exitTimedOut, nil
	}
	if err != nil {
		return 0, err
	}
	if console != nil {
		console.finish()
	}
	return st.Code, nil
}

// asFile returns w as an *os.File the command can write to directly: w
// itself, or a pipe copied into w until the returned func is called.
func asFile(w io.Writer, std *os.File) (*os.File, func()) {
	if f, ok := w.(*os.File); ok {
		return f, func() {}
	}
	if w == nil {
		return std, func() {}
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return std, func() {}
	}
	copied := make(chan struct{})
	go func() {
		io.Copy(w, r)
		r.Close()
		close(copied)
	}()
	return pw, func() {
		pw.Close()
		<-copied
	}
}

// consoleCopy connects the caller's terminal (or plain stdin/stdout) to a
// pty master: raw mode on the caller's terminal, its window size on the
// pty, and two copies.
type consoleCopy struct {
	master  *os.File
	in      *os.File
	saved   *unix.Termios // the caller's terminal before raw mode
	outDone chan struct{}
}

func startConsole(master, in, out *os.File) (*consoleCopy, error) {
	c := &consoleCopy{master: master, in: in, outDone: make(chan struct{})}
	if t, err := unix.IoctlGetTermios(int(in.Fd()), unix.TCGETS); err == nil {
		saved := *t
		raw := *t
		// cfmakeraw: keys (Ctrl-C included) go to the container's pty,
		// whose line discipline acts on them.
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		if err := unix.IoctlSetTermios(int(in.Fd()), unix.TCSETS, &raw); err != nil {
			return nil, fmt.Errorf("raw mode: %w", err)
		}
		c.saved = &saved
	}
	c.resize()
	go func() {
		io.Copy(master, in)
	}()
	go func() {
		defer close(c.outDone)
		io.Copy(out, master) // ends with EIO once the last slave fd closes
	}()
	return c, nil
}

// resize copies the caller's window size to the pty (SIGWINCH in the
// container follows).
// forwardSignals passes what arrives on sigc to send, and SIGWINCH to
// the console's size (when there is a console), until the returned stop
// is called.
func forwardSignals(sigc <-chan os.Signal, console *consoleCopy, send func(syscall.Signal)) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigc:
				if s == syscall.SIGWINCH {
					if console != nil {
						console.resize()
					}
					continue
				}
				send(s.(syscall.Signal))
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

func (c *consoleCopy) resize() {
	ws, err := unix.IoctlGetWinsize(int(c.in.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return
	}
	unix.IoctlSetWinsize(int(c.master.Fd()), unix.TIOCSWINSZ, ws)
}

// finish waits for the rest of the command's output (bounded: a
// background process may keep the terminal open).
func (c *consoleCopy) finish() {
	select {
	case <-c.outDone:
	case <-time.After(2 * time.Second):
	}
}

func (c *consoleCopy) restore() {
	if c.saved != nil {
		unix.IoctlSetTermios(int(c.in.Fd()), unix.TCSETS, c.saved)
		c.saved = nil
	}
}
