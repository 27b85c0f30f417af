package main

import (
	"flag"
	"fmt"
	"io"
)

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// prints its usage to stderr.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: reconciled %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseInterspersed parses flags that may appear before, between or after
// positional arguments (`status web -o json` as well as `status -o json web`).
// Everything after a literal "--" is positional and returned untouched.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], append([]string{}, args[i+1:]...)
			break
		}
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return append(positional, tail...), nil
}

// parseArgs is parseInterspersed followed by a check that from min to max
// positional arguments remain (max < 0: no upper bound). On a failure it
// has printed why (the flag package's message, or the usage), and ok is
// false: the command exits 2.
func parseArgs(fs *flag.FlagSet, args []string, min, max int) (pos []string, ok bool) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, false
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		fs.Usage()
		return nil, false
	}
	return pos, true
}
