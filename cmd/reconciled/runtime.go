package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/sys"
)

func init() {
	preMainHooks = append(preMainHooks, executor.MaybeRunStage)
	register(&command{
		name:       "runtime",
		summary:    "low-level OCI runtime: create, start, state, kill, delete, list, run",
		run:        runRuntime,
		ownSignals: true,
	})
}

const runtimeSynopsis = `runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] [--systemd-cgroup] COMMAND [ARGS...]

commands:
  create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] [--preserve-fds N] ID
  start ID
  state ID
  kill [--all] ID [SIGNAL]
  delete [--force] ID
  list [-q] [--format table|json] [-o json]
  run [-d] [--keep] [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] [--preserve-fds N] ID
  spec [--bundle DIR] [--rootless]
  features
` + runtimeOpsSynopsis

func runRuntime(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runRunc(ctx, "runtime", args, stdout, stderr)
}

// runRunc is `reconciled runtime ARGS` and `reconciled-runc ARGS` (name
// says which, for messages): runc's command line.
func runRunc(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	synopsis := runtimeSynopsis
	if name == runcName {
		synopsis = strings.TrimPrefix(synopsis, "runtime ")
	}
	prog := "reconciled runtime"
	if name == runcName {
		prog = runcName
	}
	// The flag package prints its message and the usage on an error, and
	// the usage on -h: kept, so that help goes to stdout in runc's shape.
	var parseOut bytes.Buffer
	fs := newFlagSet(name, synopsis, &parseOut)
	g := addRuncGlobals(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			runcHelp(stdout, prog, fs)
			return 0
		}
		stderr.Write(parseOut.Bytes())
		return 2
	}
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: reconciled %s\n", synopsis)
		fs.PrintDefaults()
	}
	if g.version {
		fmt.Fprint(stdout, runcVersionText(name))
		return 0
	}
	args = fs.Args()
	if len(args) == 0 {
		fs.Usage()
		return 2
	}
	sub, args := args[0], args[1:]
	// Help as runc gives it: `help`, `help CMD`, `CMD -h`, on stdout.
	again := func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return runRunc(ctx, name, args, stdout, stderr)
	}
	switch {
	case sub == "help" && len(args) == 0:
		runcHelp(stdout, prog, fs)
		return 0
	case sub == "help":
		return runcSubHelp(ctx, prog, args[0], again, stdout, stderr)
	case len(args) > 0 && isHelpArg(args[0]) && ctx.Value(subHelpKey{}) == nil:
		return runcSubHelp(ctx, prog, sub, again, stdout, stderr)
	}
	// list and state only read: SIGINT or SIGTERM may end them at any
	// point, as they do runc's and crun's, and they start 0.4 ms faster
	// without signal handling. Every other subcommand changes something
	// and gets a context those signals cancel, once a goroutine has asked
	// for them (signalContextLater).
	if sub != "list" && sub != "ls" && sub != "state" {
		var stop context.CancelFunc
		ctx, stop = signalContextLater(ctx)
		defer stop()
	}
	logger, closeLog, err := g.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "reconciled %s: %v\n", name, err)
		return 2
	}
	defer closeLog()
	root := &g.root
	open := func() (*executor.Runtime, error) {
		opts, err := g.options(ctx, logger)
		if err != nil {
			return nil, err
		}
		return executor.New(*root, opts...)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "reconciled %s %s: %v\n", name, sub, err)
		if g.log != "" {
			// The error is the message, as runc logs it.
			logger.Error(err.Error(), "command", sub, "err", err)
		}
		return 1
	}
	// result is the exit status for a subcommand's error: 0 for none, 2
	// for errUsage (the usage is printed), 1 for any other (reported).
	result := func(err error) int {
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		return fail(err)
	}
	// with opens the runtime and runs f with it.
	with := func(f func(*executor.Runtime) error) int {
		rt, err := open()
		if err != nil {
			return fail(err)
		}
		return result(f(rt))
	}
	// oneID parses a subcommand's arguments into fs and returns the one
	// container ID they name; false (usage printed) when they are wrong.
	oneID := func(fs *flag.FlagSet, args []string) (string, bool) {
		pos, ok := parseArgs(fs, args, 1, 1)
		if !ok {
			return "", false
		}
		return pos[0], true
	}

	switch sub {
	case "create", "run":
		usage := "runtime create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] ID"
		if sub == "run" {
			usage = "runtime run [-d] [--keep] [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] ID"
		}
		sfs := newFlagSet("runtime "+sub, usage, stderr)
		// Called as reconciled-runc, by an engine, a detached
		// container's init is the caller's to reap, as runc's is.
		f := createFlags{run: sub == "run", callerReaps: name == runcName}
		sfs.StringVar(&f.bundle, "bundle", ".", "bundle directory (holds config.json)")
		sfs.StringVar(&f.bundle, "b", ".", "shorthand for --bundle")
		sfs.StringVar(&f.pidFile, "pid-file", "", "write the container process's PID here")
		sfs.StringVar(&f.consoleSocket, "console-socket", "", "with process.terminal: send the terminal's master to this unix socket")
		if sub == "run" {
			sfs.BoolVar(&f.detach, "detach", false, "start the container and return (do not wait for it)")
			sfs.BoolVar(&f.detach, "d", false, "same as --detach")
			sfs.BoolVar(&f.keep, "keep", false, "keep the stopped container (do not delete it once it exits)")
		}
		preserve := sfs.Int("preserve-fds", 0, "pass this process's fds 3 .. 3+N-1 to the container's process as its fds 3, ...")
		sfs.Bool("no-pivot", false, "accepted for runc compatibility: the root is always switched with pivot_root")
		sfs.Bool("no-new-keyring", false, "accepted for runc compatibility")
		id, ok := oneID(sfs, args)
		if !ok {
			return 2
		}
		var err error
		if f.extra, err = preservedFiles(*preserve); err != nil {
			return fail(err)
		}
		rt, err := open()
		if err != nil {
			return fail(err)
		}
		code, err := createOrRun(ctx, rt, id, f, stderr)
		if err != nil {
			return fail(err)
		}
		return code

	case "start", "state":
		sfs := newFlagSet("runtime "+sub, "runtime "+sub+" ID", stderr)
		id, ok := oneID(sfs, args)
		if !ok {
			return 2
		}
		return with(func(rt *executor.Runtime) error {
			if sub == "start" {
				return rt.Start(ctx, id)
			}
			st, err := rt.State(ctx, id)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(reported(st))
		})

	case "kill":
		sfs := newFlagSet("runtime kill", "runtime kill [--all] ID [SIGNAL]", stderr)
		all := sfs.Bool("all", false, "signal every process in the container's cgroup, not only its init")
		sfs.BoolVar(all, "a", false, "same as --all")
		pos, ok := parseArgs(sfs, args, 1, 2)
		if !ok {
			return 2
		}
		sig := unix.SIGTERM
		if len(pos) == 2 {
			if sig, err = parseSignal(pos[1]); err != nil {
				return fail(err)
			}
		}
		return with(func(rt *executor.Runtime) error {
			if *all {
				err := rt.KillAll(ctx, pos[0], sig)
				// As runc: --all signals whatever is left in a stopped
				// container's cgroup, and nothing left is no error
				// (runc's kill.bats: `kill -a ID 0` after the stop).
				var te *executor.StateTransitionError
				if errors.As(err, &te) && te.From == executor.StatusStopped {
					return nil
				}
				return err
			}
			return rt.Kill(ctx, pos[0], sig)
		})

	case "delete":
		sfs := newFlagSet("runtime delete", "runtime delete [--force] ID", stderr)
		force := sfs.Bool("force", false, "kill the container if it is running")
		sfs.BoolVar(force, "f", false, "shorthand for --force")
		id, ok := oneID(sfs, args)
		if !ok {
			return 2
		}
		return with(func(rt *executor.Runtime) error {
			err := rt.Delete(ctx, id, *force)
			// As runc and crun: with --force, a container that does not
			// exist is deleted already.
			if *force && errors.Is(err, executor.ErrNotExist) {
				return nil
			}
			return err
		})

	case "ps":
		return result(runcPs(ctx, open, args, stdout, stderr))

	case "checkpoint", "restore":
		return result(runcCheckpoint(sub, args, stderr))

	case "spec":
		return result(runSpec(args, stderr))

	case "features":
		sfs := newFlagSet("runtime features", "runtime features", stderr)
		if _, ok := parseArgs(sfs, args, 0, 0); !ok {
			return 2
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "    ")
		return result(enc.Encode(features()))

	case "exec", "pause", "resume", "stats", "events", "update":
		rx := &runcExecEnv{logger: logger, report: func(err error) {
			if g.log != "" {
				logger.Error(err.Error(), "command", sub, "err", err)
			}
		}}
		return runtimeOp(ctx, *root, sub, args, stdout, stderr, rx)

	case "list", "ls":
		return runcList(*root, args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "reconciled %s: unknown command %q\n", name, sub)
	fs.Usage()
	return 2
}

// parseSignal accepts what sys.ParseSignal does ("KILL", "SIGKILL", "kill",
// "9", "SIGRTMIN+3"), and 0, which kill(2) delivers to nobody: `kill ID 0`
// asks whether the container's init is there to be signalled.
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n == 0 {
		return 0, nil
	}
	return sys.ParseSignal(s)
}
