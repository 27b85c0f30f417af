package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"reconciled.dev/reconciled/internal/daemon"
)

func init() {
	register(&command{
		name:    "status",
		summary: "show what the running daemon sees: every container, or one with its events",
		run:     runStatus,
	})
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "status [--state DIR] [NAME] [-o text|json]", stderr)
	state := fs.String("state", daemon.DefaultState, "the daemon's state directory")
	output := fs.String("o", "text", "output format: text or json")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "reconciled status: -o %q: use text or json\n", *output)
		return 2
	}
	if len(pos) > 1 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "reconciled status: %v\n", err)
		if errors.Is(err, daemon.ErrNoDaemon) {
			fmt.Fprintf(stderr, "(start it with 'reconciled run --state %s'; the last statuses it wrote are in %s)\n", *state, daemon.Layout(*state).StatusDir())
		}
		return 1
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if len(pos) == 1 {
		var c daemon.ContainerStatus
		if err := daemon.Query(ctx, *state, "/v1/containers/"+pos[0], &c); err != nil {
			return fail(err)
		}
		if *output == "json" {
			return printJSON(stdout, stderr, c)
		}
		printContainer(stdout, &c, time.Now())
		return 0
	}
	var rep daemon.Report
	if err := daemon.Query(ctx, *state, "/v1/status", &rep); err != nil {
		return fail(err)
	}
	if *output == "json" {
		return printJSON(stdout, stderr, rep)
	}
	printReport(stdout, &rep, time.Now())
	return 0
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "reconciled: %v\n", err)
		return 1
	}
	return 0
}

func printReport(w io.Writer, rep *daemon.Report, now time.Time) {
	if !rep.Daemon.Loaded {
		fmt.Fprintf(w, "manifests in %s not read yet\n", rep.Manifests)
	} else if rep.Revision != "" {
		fmt.Fprintf(w, "manifests %s at revision %s\n", rep.Manifests, rep.Revision)
	}
	if rep.CgroupDriver != "" {
		fmt.Fprintf(w, "cgroup driver %s, container logs to %s\n", rep.CgroupDriver, rep.LogDriver)
	}
	if rep.DiskPressure && rep.ImageDisk != nil {
		fmt.Fprintln(w, rep.ImageDisk.PressureLine())
	}
	if len(rep.Containers) == 0 {
		fmt.Fprintln(w, "no containers")
	} else {
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tPHASE\tPID\tRESTARTS\tEXIT\tAGE\tRUNTIME\tSOURCE\tMESSAGE")
		for _, c := range rep.Containers {
			msg := c.Message
			if c.LastError != "" && !strings.Contains(msg, c.LastError) {
				msg = strings.TrimPrefix(msg+"; last error: "+c.LastError, "; ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Phase, dash(c.Pid), c.Restarts,
				exitText(&c), age(c.Started, now), dashString(c.Runtime), filepath.Base(c.Source), msg)
		}
		tw.Flush()
	}
	for _, f := range rep.Files {
		if f.Valid {
			continue
		}
		fmt.Fprintf(w, "\n%s is invalid (its last good definitions stay in force):\n", f.Path)
		for _, e := range f.Errors {
			fmt.Fprintf(w, "  %s\n", e.Error())
		}
	}
	printImports(w, rep.Imports, now)
}

// printImports is the import directory's section of the status: only
// when it has entries.
func printImports(w io.Writer, imports []daemon.ImportReport, now time.Time) {
	if len(imports) == 0 {
		return
	}
	fmt.Fprintln(w, "\nimports:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, im := range imports {
		what := strings.Join(im.Images, ", ")
		if im.Error != "" {
			what = "failed: " + im.Error
		}
		when := "-"
		if !im.Imported.IsZero() {
			when = age(im.Imported, now) + " ago"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", filepath.Base(im.Path), dashString(shortDigest(im.Digest)), when, what)
	}
	tw.Flush()
}

func printContainer(w io.Writer, c *daemon.ContainerStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Name", c.Name)
	row("Phase", c.Phase)
	row("PID", dash(c.Pid))
	row("Restarts", strconv.Itoa(c.Restarts))
	row("Last exit", exitText(c))
	if !c.Started.IsZero() {
		row("Started", c.Started.Local().Format(time.DateTime)+" ("+age(c.Started, now)+" ago)")
	}
	if !c.NextTry.IsZero() {
		row("Next try", c.NextTry.Local().Format(time.DateTime))
	}
	row("Runtime", dashString(c.Runtime))
	row("Source", c.Source)
	row("Spec hash", c.SpecHash)
	if c.Message != "" {
		row("Message", c.Message)
	}
	if c.LastError != "" {
		row("Last error", c.LastError)
	}
	tw.Flush()
	if len(c.Errors) > 0 {
		fmt.Fprintln(w, "Errors:")
		for _, e := range c.Errors {
			fmt.Fprintf(w, "  %s\n", e.Error())
		}
	}
	fmt.Fprintln(w, "Events:")
	if len(c.Events) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, e := range c.Events {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Action, e.Reason)
	}
	tw.Flush()
}

func dash(pid int) string {
	if pid == 0 {
		return "-"
	}
	return strconv.Itoa(pid)
}

func dashString(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func exitText(c *daemon.ContainerStatus) string {
	if c.ExitCode == nil {
		return "-"
	}
	s := strconv.Itoa(*c.ExitCode)
	if c.OOMKilled {
		s += " (OOM)"
	}
	return s
}

// age is a duration for people: 45s, 12m, 3h, 4d.
func age(since time.Time, now time.Time) string {
	if since.IsZero() {
		return "-"
	}
	d := now.Sub(since)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}
