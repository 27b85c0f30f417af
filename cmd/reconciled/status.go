//go:build !reconciled_lean

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
	"unicode"
	"unicode/utf8"

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
	pos, ok := parseArgs(fs, args, 0, 1)
	if !ok {
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "reconciled status: -o %q: use text or json\n", *output)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "reconciled status: %s\n", termSafe(err.Error()))
		if errors.Is(err, daemon.ErrNoDaemon) {
			fmt.Fprintf(stderr, "(start it with 'reconciled run --state %s'; the last statuses it wrote are in %s)\n", termSafe(*state), termSafe(daemon.Layout(*state).StatusDir()))
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

// printReport is the text of the daemon's status. Every string in it that
// comes from a file name, a manifest, an image or an error goes through
// termSafe: a file named "a\x1b[2J.yaml" must not drive the operator's
// terminal, nor one named "a\nweb running" forge a line.
func printReport(w io.Writer, rep *daemon.Report, now time.Time) {
	if !rep.Daemon.Loaded {
		fmt.Fprintf(w, "manifests in %s not read yet\n", termSafe(rep.Manifests))
	} else if rep.Revision != "" {
		fmt.Fprintf(w, "manifests %s at revision %s\n", termSafe(rep.Manifests), termSafe(rep.Revision))
	}
	if rep.CgroupDriver != "" {
		parent := ""
		if rep.CgroupParent != "" {
			parent = " (cgroups under " + termSafe(rep.CgroupParent) + ")"
		}
		fmt.Fprintf(w, "cgroup driver %s%s, container logs to %s\n", termSafe(rep.CgroupDriver), parent, termSafe(rep.LogDriver))
	}
	if rep.DiskPressure && rep.ImageDisk != nil {
		fmt.Fprintln(w, termSafe(rep.ImageDisk.PressureLine()))
	}
	if len(rep.Containers) == 0 {
		fmt.Fprintln(w, "no containers")
	} else {
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tPHASE\tHEALTH\tPID\tRESTARTS\tEXIT\tAGE\tRUNTIME\tSOURCE\tMESSAGE")
		for _, c := range rep.Containers {
			msg := c.Message
			if c.LastError != "" && !strings.Contains(msg, c.LastError) {
				msg = strings.TrimPrefix(msg+"; last error: "+c.LastError, "; ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", termSafe(c.Name), termSafe(c.Phase), termSafe(healthText(&c)), dash(c.Pid), c.Restarts,
				exitText(&c), age(c.Started, now), termSafe(dashString(c.Runtime)), termSafe(filepath.Base(c.Source)), termSafe(msg))
		}
		tw.Flush()
	}
	for _, f := range rep.Files {
		if f.Valid {
			continue
		}
		fmt.Fprintf(w, "\n%s is invalid (its last good definitions stay in force):\n", termSafe(f.Path))
		for _, e := range f.Errors {
			fmt.Fprintf(w, "  %s\n", termSafe(e.Error()))
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
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", termSafe(filepath.Base(im.Path)), termSafe(dashString(shortDigest(im.Digest))), when, termSafe(what))
	}
	tw.Flush()
}

func printContainer(w io.Writer, c *daemon.ContainerStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, termSafe(v)) }
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
	row("Health", healthText(c))
	row("Ready", strconv.FormatBool(c.Ready))
	if c.HealthOutput != "" {
		row("Last probe", c.HealthOutput)
	}
	if c.NotifyStatus != "" {
		row("Notify status", c.NotifyStatus)
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
			fmt.Fprintf(w, "  %s\n", termSafe(e.Error()))
		}
	}
	fmt.Fprintln(w, "Events:")
	if len(c.Events) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, e := range c.Events {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05.000"), termSafe(e.Action), termSafe(e.Reason))
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

// termSafe is s as it may be printed to a terminal: C0 and C1 control
// characters, DEL, the other characters that are not graphic (bidi
// overrides, line and paragraph separators, unassigned) and bytes that are
// not UTF-8 are escaped as strconv.Quote does (\n, \t, \x1b, \u0085,
// \u202e, \xff), and so is the backslash (\\), so that an escape in the
// output always means an escaped character; everything else, UTF-8 text
// included, is kept. Names, paths, messages and events from files,
// manifests, images and errors go through it in every text output; -o json
// is left as it is (encoding/json escapes controls itself).
func termSafe(s string) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\\' || !unicode.IsGraphic(r) || r == utf8.RuneError && size == 1 {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s)+16)
	b = append(b, s[:i]...)
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\x`...)
			b = append(b, hexDigits[s[i]>>4], hexDigits[s[i]&0xf])
		case r == '\\':
			b = append(b, `\\`...)
		case unicode.IsGraphic(r):
			b = append(b, s[i:i+size]...)
		default:
			q := strconv.QuoteRuneToASCII(r) // '\n', '\x1b', '\u0085'
			b = append(b, q[1:len(q)-1]...)
		}
		i += size
	}
	return string(b)
}

const hexDigits = "0123456789abcdef"

// healthText is the health column: "healthy", "unhealthy(3)" (with the
// current failure streak),
// "-" for none.
func healthText(c *daemon.ContainerStatus) string {
	switch {
	case c.Health == "" || c.Health == "none":
		return "-"
	case c.HealthFailures > 0:
		return fmt.Sprintf("%s(%d)", c.Health, c.HealthFailures)
	}
	return c.Health
}
