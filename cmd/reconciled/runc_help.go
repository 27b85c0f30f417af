package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
)

// runcCommand is one of runc's subcommands as its help lists it.
type runcCommand struct {
	name, summary string
}

// runcCommands are runc 1.1's subcommands, in its help's order, with its
// one-line descriptions (tools and people match on them). checkpoint and
// restore are listed, as runc lists them, and refused: reconciled has no
// CRIU.
var runcCommands = []runcCommand{
	{"checkpoint", "checkpoint a running container (not supported: reconciled has no CRIU)"},
	{"create", "create a container"},
	{"delete", "delete any resources held by the container often used with detached container"},
	{"events", "display container events such as OOM notifications, cpu, memory, and IO usage statistics"},
	{"exec", "execute new process inside the container"},
	{"features", "show the enabled features"},
	{"kill", "kill sends the specified signal (default: SIGTERM) to the container's init process"},
	{"list", "lists containers started by runc with the given root"},
	{"pause", "pause suspends all processes inside the container"},
	{"ps", "ps displays the processes running inside a container"},
	{"restore", "restore a container from a previous checkpoint (not supported: reconciled has no CRIU)"},
	{"resume", "resumes all processes that have been previously paused"},
	{"run", "create and run a container"},
	{"spec", "create a new specification file"},
	{"start", "executes the user defined process in a created container"},
	{"state", "output the state of a container"},
	{"update", "update container resource constraints"},
}

func lookupRuncCommand(name string) (runcCommand, bool) {
	if name == "ls" {
		name = "list"
	}
	for _, c := range runcCommands {
		if c.name == name {
			return c, true
		}
	}
	return runcCommand{}, false
}

func isHelpArg(s string) bool {
	return s == "-h" || s == "--help" || s == "-help"
}

// runcHelp is the help runc prints for `runc -h` and `runc help`, in its
// shape (NAME:, USAGE:, COMMANDS:, GLOBAL OPTIONS:), which scripts and
// runc's own tests read; prog is how the binary was called.
func runcHelp(w io.Writer, prog string, globals *flag.FlagSet) {
	fmt.Fprintf(w, "NAME:\n   %s - Open Container Initiative runtime\n\n", prog)
	fmt.Fprintf(w, "reconciled's runtime follows runc's command line: containers are\n"+
		"created from OCI bundles (a config.json and a root filesystem) and kept\n"+
		"under --root.\n\n")
	fmt.Fprintf(w, "USAGE:\n   %s [global options] command [command options] [arguments...]\n\n", prog)
	fmt.Fprintf(w, "COMMANDS:\n")
	for _, c := range runcCommands {
		fmt.Fprintf(w, "   %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "   %-11s %s\n", "help", "shows a list of commands or help for one command")
	fmt.Fprintf(w, "\nGLOBAL OPTIONS:\n")
	globals.SetOutput(w)
	globals.PrintDefaults()
	fmt.Fprintf(w, "\nRun '%s help COMMAND' or '%s COMMAND -h' for a command's options.\n", prog, prog)
}

// subHelpKey marks the context of a subcommand run only to print its
// flags (see runcSubHelp).
type subHelpKey struct{}

// runcSubHelp prints `PROG SUB -h` in runc's shape to stdout and returns
// 0: NAME: (PROG SUB - what it does), USAGE: and OPTIONS:, the latter
// two from the subcommand's own flag set, which run prints when given
// -h. An unknown SUB is runc's "No help topic", exit 2.
func runcSubHelp(ctx context.Context, prog, sub string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) int, stdout, stderr io.Writer) int {
	c, ok := lookupRuncCommand(sub)
	if !ok {
		fmt.Fprintf(stderr, "No help topic for '%s'\n", sub)
		return 2
	}
	fmt.Fprintf(stdout, "NAME:\n   %s %s - %s\n\n", prog, c.name, c.summary)
	var buf bytes.Buffer
	run(context.WithValue(ctx, subHelpKey{}, true), []string{c.name, "-h"}, &buf, &buf)
	// The flag set printed "usage: reconciled runtime SUB SYNOPSIS" and
	// then its flags.
	first, flags, _ := strings.Cut(buf.String(), "\n")
	synopsis := strings.TrimPrefix(first, "usage: reconciled ")
	synopsis = strings.TrimPrefix(synopsis, "runtime ")
	fmt.Fprintf(stdout, "USAGE:\n   %s %s\n", prog, synopsis)
	if flags != "" {
		fmt.Fprintf(stdout, "\nOPTIONS:\n%s", flags)
	}
	return 0
}
