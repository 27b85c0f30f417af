package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/statedir"
)

// refreshDaemon tells a daemon, if one runs with state directory state,
// to look at container name again: a daemon-level command (ops_daemon.go)
// changed it. Nil where the daemon is not linked in (the container stages'
// binary, built with reconciled_lean), which has none of those commands.
var refreshDaemon func(ctx context.Context, state, name string) error

var opsSynopsis = map[string]string{
	"pause":  "NAME",
	"resume": "NAME",
	"ps":     "[-o table|json] NAME",
	"stats":  "[-o table|json] [NAME]",
	"kill":   "[--all] [--signal SIG] NAME",
	"events": "[--stats] [--interval DUR] ID",
	"update": "[--memory BYTES] [--memory-reservation BYTES] [--memory-swap BYTES] [--cpu-share N] [--cpu-period N] [--cpu-quota N] [--cpu-rt-period N] [--cpu-rt-runtime N] [--cpuset-cpus LIST] [--cpuset-mems LIST] [--pids-limit N] [--blkio-weight N] [-r FILE] ID",
}

// opsCommand runs pause, resume, ps, stats or kill. root empty: the
// daemon-level command (NAME under --state); else `runtime SUB` on root.
func opsCommand(ctx context.Context, sub, root string, args []string, stdout, stderr io.Writer) int {
	prefix := sub
	if root != "" {
		prefix = "runtime " + sub
	}
	synopsis := prefix + " " + strings.Replace(opsSynopsis[sub], "NAME", "ID", 1)
	if root == "" {
		synopsis = prefix + " [--state DIR] " + opsSynopsis[sub]
	}
	fs := newFlagSet(prefix, synopsis, stderr)
	var state *string
	if root == "" {
		state = fs.String("state", statedir.DefaultState, "the daemon's state directory")
	}
	var format *string
	if sub == "ps" || sub == "stats" {
		format = fs.String("o", "table", "output format: table or json")
	}
	var all *bool
	var sigName *string
	if sub == "kill" {
		all = fs.Bool("all", false, "signal every process in the container's cgroup")
		fs.BoolVar(all, "a", false, "same as --all")
		sigName = fs.String("signal", "SIGTERM", "the signal, by name or number")
		fs.StringVar(sigName, "s", "SIGTERM", "same as --signal")
	}
	var upd *updateFlags
	if sub == "update" {
		upd = addUpdateFlags(fs)
	}
	var ev eventsFlags
	if sub == "events" {
		fs.BoolVar(&ev.stats, "stats", false, "print the container's stats once, as runc's stats event, and exit")
		fs.DurationVar(&ev.interval, "interval", defaultEventsInterval, "print a stats event every DUR among the events until the container exits (0: events only, no stats)")
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if sub == "events" {
		fs.Visit(func(f *flag.Flag) { ev.intervalSet = ev.intervalSet || f.Name == "interval" })
	}
	if len(pos) > 1 || (len(pos) == 0 && sub != "stats") || (format != nil && *format != "table" && *format != "json") {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "reconciled %s: %v\n", prefix, err)
		return 1
	}
	if root == "" {
		root = statedir.Layout(*state).Runtime()
	}
	rt, err := executor.New(root)
	if err != nil {
		return fail(err)
	}
	var id string
	if len(pos) == 1 {
		id = pos[0]
	}
	switch sub {
	case "pause", "resume":
		if sub == "pause" {
			err = rt.Pause(ctx, id)
		} else {
			err = rt.Resume(ctx, id)
		}
		if err == nil && state != nil && refreshDaemon != nil {
			// The daemon, if one runs, must not act on what it saw before.
			// (`runtime pause` has no daemon: it works on --root alone.)
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if rerr := refreshDaemon(rctx, *state, id); rerr != nil {
				fmt.Fprintf(stderr, "reconciled %s: warning: the daemon was not told: %v\n", sub, rerr)
			}
			cancel()
		}
	case "kill":
		sig, perr := parseSignal(*sigName)
		if perr != nil {
			return fail(perr)
		}
		if *all {
			err = rt.KillAll(ctx, id, sig)
		} else {
			err = rt.Kill(ctx, id, sig)
		}
	case "ps":
		var procs []executor.ProcessInfo
		if procs, err = rt.Ps(ctx, id); err == nil {
			err = printPs(stdout, *format, procs)
		}
	case "stats":
		err = printStats(ctx, rt, stdout, *format, id)
	case "events":
		err = runEvents(ctx, rt, id, ev, stdout)
	case "update":
		err = runUpdate(ctx, rt, id, upd)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

func printPs(w io.Writer, format string, procs []executor.ProcessInfo) error {
	if format == "json" {
		if procs == nil {
			procs = []executor.ProcessInfo{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(procs)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tCPID\tPPID\tUSER\tSTATE\tSTARTED BY\tCOMMAND")
	for _, p := range procs {
		user := p.User
		if user == "" {
			user = fmt.Sprint(p.UID)
		}
		state := p.State
		if p.Zombie {
			state += " (zombie)"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\n", p.Pid, p.NSPid, p.PPid, user, state, p.Role, p.Command)
	}
	return tw.Flush()
}

// namedStats is one container's line of `stats -o json`.
type namedStats struct {
	Name string `json:"name"`
	*cgroups.Stats
}

func printStats(ctx context.Context, rt *executor.Runtime, w io.Writer, format, id string) error {
	var rows []namedStats
	var errs []error
	if id != "" {
		s, err := rt.Stats(ctx, id)
		if err != nil {
			return err
		}
		rows = append(rows, namedStats{id, s})
	} else {
		sts, err := rt.List(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		for _, st := range sts {
			if st.Status != executor.StatusRunning && st.Status != executor.StatusCreated {
				continue
			}
			s, err := rt.Stats(ctx, st.ID)
			if err != nil {
				if !errors.Is(err, executor.ErrNotExist) {
					errs = append(errs, err)
				}
				continue
			}
			rows = append(rows, namedStats{st.ID, s})
		}
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		var err error
		if id != "" {
			err = enc.Encode(rows[0])
		} else {
			if rows == nil {
				rows = []namedStats{}
			}
			err = enc.Encode(rows)
		}
		return errors.Join(append(errs, err)...)
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMEMORY\tLIMIT\tOOM KILLS\tCPU\tPIDS")
	for _, r := range rows {
		limit := "-"
		if r.MemoryLimit != 0 {
			limit = bytesHuman(r.MemoryLimit)
		}
		pids := fmt.Sprint(r.PidsCurrent)
		if r.PidsLimit != 0 {
			pids += fmt.Sprintf("/%d", r.PidsLimit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.2fs\t%s\n", r.Name, bytesHuman(r.MemoryUsage), limit, r.OOMKills, float64(r.CPUUsageNanos)/1e9, pids)
	}
	return errors.Join(append(errs, tw.Flush())...)
}

func bytesHuman(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
