package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	// Maps the executable in at the start of every command's process and
	// every container init's (not the daemon's): see the package.
	_ "reconciled.dev/reconciled/internal/prefault"
)

// command is one subcommand of the binary. Each lives in its own file and
// registers itself in an init function, so that parts of the CLI can grow
// independently.
type command struct {
	name    string
	summary string
	// run gets the arguments after the command name and returns the exit
	// code. It writes its own errors to stderr.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	// hidden commands are internal entry points (re-exec stages).
	hidden bool
	// ownSignals: run gets a plain context and calls signalContext itself
	// where it needs one. Otherwise dispatch hands run a context that
	// SIGINT and SIGTERM cancel (instead of ending the process).
	ownSignals bool
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("duplicate command " + c.name)
	}
	commands[c.name] = c
}

// preMainHooks run before anything else in main: the executor's re-exec
// stages (container init, monitor) take over the process here.
var preMainHooks []func()

func main() {
	for _, h := range preMainHooks {
		h()
	}
	if filepath.Base(os.Args[0]) == runcName {
		// runc's bare command line, for engines that call an OCI runtime.
		os.Exit(runRunc(context.Background(), runcName, os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the command args name. Asked for (-h, --help, help), the
// usage goes to stdout and the exit code is 0; without a command it goes
// to stderr with 2, as for an unknown command. `help COMMAND` is
// `COMMAND -h`, exit 0. --version is the version command.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "help":
		if len(args) == 1 {
			usage(stdout)
			return 0
		}
		c, ok := commands[args[1]]
		if !ok || len(args) > 2 {
			fmt.Fprintf(stderr, "reconciled help: unknown command %q\n\n", strings.Join(args[1:], " "))
			usage(stderr)
			return 2
		}
		// A command's flag set prints its usage to the writer it is
		// given and returns 2 for -h; here that was asked for.
		c.run(context.Background(), []string{"-h"}, stdout, stdout)
		return 0
	case "--version", "-version":
		args = append([]string{"version"}, args[1:]...)
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "reconciled: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx := context.Background()
	if !c.ownSignals {
		var stop context.CancelFunc
		ctx, stop = signalContext(ctx)
		defer stop()
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

// signalContext returns a context that SIGINT and SIGTERM cancel, so that a
// command can finish or undo what it was doing instead of dying half way.
// It costs about 0.4 ms of process start (os/signal's receiving thread and
// the context's goroutine, which wake the second CPU), which is why a
// command that has nothing to undo (runtime list, runtime state) can do
// without it: see command.ownSignals.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// signalContextLater is signalContext for the runtime's short commands
// (create, start, kill, delete, ...), whose start is what a caller waits
// for: a goroutine asks for the signals while the command goes on, so
// that os/signal's threads start beside it and not before it (0.4-2.3 ms
// of `runtime create` on a 2-core VM, measured; a cycle of create, start,
// kill and delete 3.5 ms shorter, bench/runtime.sh). A signal that comes
// before they are asked for ends the process as it ends crun's: as if it
// had been killed, which a create survives anyway (its monitor's lifeline
// kills the half-made container's init, and delete --force removes what
// is left). After the first signal the default action is back, so a
// second one ends the command at once.
func signalContextLater(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(c)
		select {
		case <-c:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: reconciled COMMAND [ARGS...]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'reconciled help COMMAND' for a command's flags, 'reconciled --version' for the version.")
}
