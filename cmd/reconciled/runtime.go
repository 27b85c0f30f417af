package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/daemon"
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

const runtimeSynopsis = `runtime [--root DIR] COMMAND [ARGS...]

commands:
  create [--bundle DIR] [--pid-file FILE] ID
  start ID
  state ID
  kill ID [SIGNAL]
  delete [--force] ID
  list [-o json]
  run [--bundle DIR] ID
` + runtimeOpsSynopsis

func runRuntime(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("runtime", runtimeSynopsis, stderr)
	root := fs.String("root", executor.DefaultRoot, "directory for container state")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	args = fs.Args()
	if len(args) == 0 {
		fs.Usage()
		return 2
	}
	sub, args := args[0], args[1:]
	// list and state only read: SIGINT or SIGTERM may end them at any
	// point, as they do runc's and crun's, and they start 0.4 ms faster
	// without signal handling. Every other subcommand changes something
	// and gets a context those signals cancel.
	if sub != "list" && sub != "ls" && sub != "state" {
		var stop context.CancelFunc
		ctx, stop = signalContext(ctx)
		defer stop()
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	open := func() (*executor.Runtime, error) {
		opts := []executor.Option{executor.WithLogger(logger)}
		// A daemon's runtime root (STATE/runtime): its containers'
		// cgroups are under the daemon's own parent.
		if abs, err := filepath.Abs(*root); err == nil && filepath.Base(abs) == "runtime" {
			if f := daemon.RecordedCgroupsPath(filepath.Dir(abs)); f != nil {
				opts = append(opts, executor.WithCgroupsPath(f))
			}
		}
		return executor.New(*root, opts...)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "reconciled runtime %s: %v\n", sub, err)
		return 1
	}
	// oneID parses a subcommand's arguments into fs and returns the one
	// container ID they name; false (usage printed) when they are wrong.
	oneID := func(fs *flag.FlagSet, args []string) (string, bool) {
		pos, err := parseInterspersed(fs, args)
		if err != nil {
			return "", false
		}
		if len(pos) != 1 {
			fs.Usage()
			return "", false
		}
		return pos[0], true
	}

	switch sub {
	case "create", "run":
		sfs := newFlagSet("runtime "+sub, "runtime "+sub+" [--bundle DIR] [--pid-file FILE] ID", stderr)
		bundle := sfs.String("bundle", ".", "bundle directory (holds config.json)")
		sfs.StringVar(bundle, "b", ".", "shorthand for --bundle")
		pidFile := sfs.String("pid-file", "", "write the container process's PID here")
		id, ok := oneID(sfs, args)
		if !ok {
			return 2
		}
		rt, err := open()
		if err != nil {
			return fail(err)
		}
		opts := executor.CreateOptions{Stdout: os.Stdout, Stderr: os.Stderr, PidFile: *pidFile}
		if sub == "run" {
			opts.Stdin = os.Stdin
			return runContainer(ctx, rt, id, *bundle, opts, stderr)
		}
		if err := rt.Create(ctx, id, *bundle, opts); err != nil {
			return fail(err)
		}
		return 0

	case "start", "state":
		sfs := newFlagSet("runtime "+sub, "runtime "+sub+" ID", stderr)
		id, ok := oneID(sfs, args)
		if !ok {
			return 2
		}
		rt, err := open()
		if err != nil {
			return fail(err)
		}
		if sub == "start" {
			if err := rt.Start(ctx, id); err != nil {
				return fail(err)
			}
			return 0
		}
		st, err := rt.State(ctx, id)
		if err != nil {
			return fail(err)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reported(st)); err != nil {
			return fail(err)
		}
		return 0

	case "kill":
		sfs := newFlagSet("runtime kill", "runtime kill ID [SIGNAL]", stderr)
		pos, err := parseInterspersed(sfs, args)
		if err != nil {
			return 2
		}
		if len(pos) < 1 || len(pos) > 2 {
			sfs.Usage()
			return 2
		}
		sig := unix.SIGTERM
		if len(pos) == 2 {
			if sig, err = parseSignal(pos[1]); err != nil {
				return fail(err)
			}
		}
		rt, err := open()
		if err != nil {
			return fail(err)
		}
		if err := rt.Kill(ctx, pos[0], sig); err != nil {
			return fail(err)
		}
		return 0

	case "delete":
		sfs := newFlagSet("runtime delete", "runtime delete [--force] ID", stderr)
		force := sfs.Bool("force", false, "kill the container if it is running")
		sfs.BoolVar(force, "f", false, "shorthand for --force")
		id, ok := oneID(sfs, args)
		if !ok {
			return 2
		}
		rt, err := open()
		if err != nil {
			return fail(err)
		}
		if err := rt.Delete(ctx, id, *force); err != nil {
			// As runc and crun: with --force, a container that does
			// not exist is deleted already.
			if *force && errors.Is(err, executor.ErrNotExist) {
				return 0
			}
			return fail(err)
		}
		return 0

	case "exec", "pause", "resume", "ps", "stats", "events", "update":
		return runtimeOp(ctx, *root, sub, args, stdout, stderr)

	case "list", "ls":
		sfs := newFlagSet("runtime list", "runtime list [-o json]", stderr)
		format := sfs.String("o", "table", "output format: table or json")
		pos, err := parseInterspersed(sfs, args)
		if err != nil {
			return 2
		}
		if len(pos) != 0 || (*format != "table" && *format != "json") {
			sfs.Usage()
			return 2
		}
		sts, err := executor.List(*root)
		for i, st := range sts {
			sts[i] = reported(st)
		}
		if *format == "json" {
			if sts == nil {
				sts = []*executor.State{}
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(sts)
		} else {
			tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPID\tSTATUS\tBUNDLE\tCREATED")
			for _, s := range sts {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Local().Format(time.RFC3339))
			}
			tw.Flush()
		}
		if err != nil {
			return fail(err)
		}
		return 0
	}
	fmt.Fprintf(stderr, "reconciled runtime: unknown command %q\n", sub)
	fs.Usage()
	return 2
}

// runContainer is `run`: create, start, forward signals, wait, delete, and
// exit with the container process's status.
func runContainer(ctx context.Context, rt *executor.Runtime, id, bundle string, opts executor.CreateOptions, stderr io.Writer) int {
	// Signals are forwarded to the container, not acted on here.
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigc)
	ctx = context.WithoutCancel(ctx)
	if err := rt.Create(ctx, id, bundle, opts); err != nil {
		fmt.Fprintf(stderr, "reconciled runtime run: %v\n", err)
		return 1
	}
	code := 1
	defer func() {
		if err := rt.Delete(ctx, id, true); err != nil {
			fmt.Fprintf(stderr, "reconciled runtime run: %v\n", err)
		}
	}()
	if err := rt.Start(ctx, id); err != nil {
		fmt.Fprintf(stderr, "reconciled runtime run: %v\n", err)
		return code
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigc:
				rt.Kill(ctx, id, s.(syscall.Signal))
			case <-done:
				return
			}
		}
	}()
	st, err := rt.Wait(ctx, id)
	close(done)
	if err != nil {
		fmt.Fprintf(stderr, "reconciled runtime run: %v\n", err)
		return code
	}
	if !st.Exited {
		fmt.Fprintf(stderr, "reconciled runtime run: container %s stopped without a recorded exit status\n", id)
		return 255
	}
	return st.ExitCode
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
