package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"reconciled.dev/reconciled/executor"
)

// createFlags are create's and run's flags, runc's.
type createFlags struct {
	bundle, pidFile, consoleSocket string
	run, detach, keep              bool
	extra                          []*os.File // --preserve-fds
	// callerReaps: a created or detached container's init is left to
	// the caller's side to reap, as runc's is (reconciled-runc: engines
	// such as podman's conmon wait for it as its subreaper).
	callerReaps bool
}

// createOrRun is `create` and `run`. A spec asking for a terminal
// (process.terminal) gets a pseudo-terminal whose master goes to
// --console-socket, or, for a run in the foreground without one, is
// connected to the caller's stdin and stdout.
//
// The int is the exit code: the container process's for a run in the
// foreground, else 0.
func createOrRun(ctx context.Context, rt *executor.Runtime, id string, f createFlags, stderr io.Writer) (int, error) {
	opts := executor.CreateOptions{Stdout: os.Stdout, Stderr: os.Stderr, PidFile: f.pidFile, ExtraFiles: f.extra}
	if f.run {
		opts.Stdin = os.Stdin
	}
	detached := !f.run || f.detach
	spec, err := executor.LoadSpec(f.bundle)
	if err != nil {
		return 0, err
	}
	var master *os.File
	if spec.Process != nil && spec.Process.Terminal {
		if detached && f.consoleSocket == "" {
			return 0, errors.New("process.terminal is true: a detached container's terminal needs --console-socket")
		}
		defer func() {
			if master != nil {
				master.Close()
			}
		}()
		// The init opens the terminal on the container's devpts, as
		// runc's does (its tty then names a /dev/pts entry the process
		// sees), and hands the master over.
		cp := *spec
		proc := *spec.Process
		proc.Terminal = false
		cp.Process = &proc
		opts.Spec = &cp
		size := spec.Process.ConsoleSize
		opts.Console = func(m *os.File) error {
			master = m
			return setConsoleSize(m, size)
		}
	}
	created := func() error {
		if master != nil && f.consoleSocket != "" {
			return sendConsole(f.consoleSocket, master)
		}
		return nil
	}
	if detached {
		opts.CallerReaps = f.callerReaps
	}
	if !f.run {
		if err := rt.Create(ctx, id, f.bundle, opts); err != nil {
			return 0, err
		}
		if err := created(); err != nil {
			return 0, errors.Join(err, rt.Delete(context.WithoutCancel(ctx), id, true))
		}
		return 0, nil
	}
	if f.detach {
		if err := rt.Create(ctx, id, f.bundle, opts); err != nil {
			return 0, err
		}
		err := created()
		if err == nil {
			err = rt.Start(ctx, id)
		}
		if err != nil {
			return 0, errors.Join(err, rt.Delete(context.WithoutCancel(ctx), id, true))
		}
		return 0, nil
	}
	// The terminal, once created, for the caller's (none when the
	// socket's reader has it).
	terminal := func() *os.File {
		if f.consoleSocket != "" {
			return nil
		}
		return master
	}
	return runContainer(ctx, rt, id, f.bundle, opts, f.keep, created, terminal, stderr), nil
}

// runContainer is `run` in the foreground: create, start, forward
// signals, wait, delete (unless keep), and exit with the container
// process's status. created runs between create and start; the master
// terminal returns once created (the container's terminal, nil for none)
// is connected to the caller's stdin and stdout.
func runContainer(ctx context.Context, rt *executor.Runtime, id, bundle string, opts executor.CreateOptions, keep bool, created func() error, terminal func() *os.File, stderr io.Writer) int {
	// Signals are forwarded to the container, not acted on here.
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
	defer signal.Stop(sigc)
	ctx = context.WithoutCancel(ctx)
	fail := func(err error) {
		fmt.Fprintf(stderr, "reconciled runtime run: %v\n", err)
	}
	if err := rt.Create(ctx, id, bundle, opts); err != nil {
		fail(err)
		return 1
	}
	code := 1
	if !keep {
		defer func() {
			if err := rt.Delete(ctx, id, true); err != nil {
				fail(err)
			}
		}()
	}
	if err := created(); err != nil {
		fail(err)
		return code
	}
	var console *consoleCopy
	if master := terminal(); master != nil {
		var err error
		if console, err = startConsole(master, os.Stdin, os.Stdout); err != nil {
			fail(err)
			return code
		}
		defer console.restore()
	}
	if err := rt.Start(ctx, id); err != nil {
		fail(err)
		return code
	}
	stopForwarding := forwardSignals(sigc, console, func(s syscall.Signal) { rt.Kill(ctx, id, s) })
	st, err := rt.Wait(ctx, id)
	stopForwarding()
	if err != nil {
		fail(err)
		return code
	}
	if console != nil {
		console.finish()
	}
	if !st.Exited {
		fail(fmt.Errorf("container %s stopped without a recorded exit status", id))
		return 255
	}
	return st.ExitCode
}

// runcList is `list` with runc's flags: -q (IDs only), --format
// table|json (runc's columns and JSON), and our -o json (the executor's
// state records).
func runcList(root string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("runtime list", "runtime list [-q] [--format table|json] [-o json]", stderr)
	quiet := fs.Bool("quiet", false, "print the container IDs only")
	fs.BoolVar(quiet, "q", false, "same as --quiet")
	format := fs.String("format", "table", "table or json (runc's)")
	fs.StringVar(format, "f", "table", "same as --format")
	ours := fs.String("o", "", "json: the executor's full state records")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 0 || (*format != "table" && *format != "json") || (*ours != "" && *ours != "json" && *ours != "table") {
		fs.Usage()
		return 2
	}
	sts, err := executor.List(root)
	for i, st := range sts {
		sts[i] = reported(st)
	}
	switch {
	case *quiet:
		for _, s := range sts {
			fmt.Fprintln(stdout, s.ID)
		}
	case *ours == "json":
		if sts == nil {
			sts = []*executor.State{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(sts)
	case *format == "json":
		out := []runcState{}
		for _, s := range sts {
			out = append(out, toRuncState(s))
		}
		json.NewEncoder(stdout).Encode(out)
	default:
		tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")
		for _, s := range sts {
			r := toRuncState(s)
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.ID, r.Pid, r.Status, r.Bundle, s.Created.Local().Format(time.RFC3339Nano), r.Owner)
		}
		tw.Flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "reconciled runtime list: %v\n", err)
		return 1
	}
	return 0
}

// runcPs is `ps [--format table|json] [-o json] ID [PS ARGS...]`:
// runc's table is ps(1)'s output (-ef unless PS ARGS are given) cut to
// the container's processes; its JSON the list of their PIDs. -o json
// is the executor's process records.
func runcPs(ctx context.Context, open func() (*executor.Runtime, error), args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runtime ps", "runtime ps [--format table|json] [-o json] ID [PS ARGS...]", stderr)
	format := fs.String("format", "table", "table (ps(1)'s) or json (the PIDs)")
	fs.StringVar(format, "f", "table", "same as --format")
	ours := fs.String("o", "", "json: the executor's process records")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() < 1 || (*format != "table" && *format != "json") {
		fs.Usage()
		return errUsage
	}
	id, psArgs := fs.Arg(0), fs.Args()[1:]
	rt, err := open()
	if err != nil {
		return err
	}
	procs, err := rt.Ps(ctx, id)
	if err != nil {
		return err
	}
	if *ours != "" {
		return printPs(stdout, *ours, procs)
	}
	if *format == "json" {
		pids := []int{}
		for _, p := range procs {
			pids = append(pids, p.Pid)
		}
		return json.NewEncoder(stdout).Encode(pids)
	}
	if len(psArgs) == 0 {
		psArgs = []string{"-ef"}
	}
	out, err := exec.CommandContext(ctx, "ps", psArgs...).Output()
	if err != nil {
		return fmt.Errorf("ps %s: %w", strings.Join(psArgs, " "), err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	col := -1
	for i, h := range strings.Fields(lines[0]) {
		if h == "PID" {
			col = i
		}
	}
	if col < 0 {
		return fmt.Errorf("ps %s: no PID column in its output", strings.Join(psArgs, " "))
	}
	in := map[int]bool{}
	for _, p := range procs {
		in[p.Pid] = true
	}
	var b bytes.Buffer
	b.WriteString(lines[0] + "\n")
	for _, l := range lines[1:] {
		fields := strings.Fields(l)
		if len(fields) <= col {
			continue
		}
		if pid, err := strconv.Atoi(fields[col]); err == nil && in[pid] {
			b.WriteString(l + "\n")
		}
	}
	_, err = stdout.Write(b.Bytes())
	return err
}
