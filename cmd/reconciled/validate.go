//go:build !reconciled_lean

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"reconciled.dev/reconciled/desired"
)

func init() {
	register(&command{
		name:    "validate",
		summary: "check manifest files or directories (for CI), exit 1 on any error",
		run:     runValidate,
	})
}

// validateReport is the -o json output.
type validateReport struct {
	Valid      bool                  `json:"valid"`
	Files      int                   `json:"files"`
	Containers int                   `json:"containers"`
	Errors     []*desired.Error      `json:"errors"`
	Details    []*desired.FileStatus `json:"details"`
}

func runValidate(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", "validate [-o text|json] [--insecure-manifests] [--no-host-checks] PATH...", stderr)
	output := fs.String("o", "text", "output format: text or json")
	insecure := fs.Bool("insecure-manifests", false, "when running as root, do not refuse manifests that are writable by group or others or not owned by root")
	noHost := fs.Bool("no-host-checks", false, "do not check that root.path and bind mount sources exist on this host (for CI runners)")
	paths, ok := parseArgs(fs, args, 1, -1)
	if !ok {
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "reconciled validate: -o %q: use text or json\n", *output)
		return 2
	}

	rep := validateReport{Errors: []*desired.Error{}, Details: []*desired.FileStatus{}}
	for _, p := range paths {
		opts := desired.Options{
			ParseOptions:      desired.ParseOptions{SkipHostChecks: *noHost},
			InsecureManifests: *insecure,
			DisplayPrefix:     p,
		}
		snap, err := desired.Scan(p, opts)
		if err != nil {
			msg := err.Error()
			if errors.Is(err, desired.ErrNotExist) {
				msg = "does not exist"
			}
			rep.Errors = append(rep.Errors, &desired.Error{File: p, Msg: msg})
			continue
		}
		// Each PATH is one namespace: names must be unique within it.
		set := desired.Next(desired.Set{}, snap, opts)
		rep.Files += len(set.Files)
		rep.Containers += len(set.Containers)
		rep.Errors = append(rep.Errors, set.Errors()...)
		keys := make([]string, 0, len(set.Files))
		for k := range set.Files {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			rep.Details = append(rep.Details, set.Files[k])
		}
	}
	rep.Valid = len(rep.Errors) == 0

	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "reconciled validate: %s\n", termSafe(err.Error()))
			return 2
		}
	} else {
		for _, e := range rep.Errors {
			fmt.Fprintln(stdout, termSafe(e.Error()))
		}
		fmt.Fprintf(stderr, "%s, %s, %s\n", validatePlural(rep.Files, "file"), validatePlural(rep.Containers, "container"), validatePlural(len(rep.Errors), "error"))
	}
	if !rep.Valid {
		return 1
	}
	return 0
}

func validatePlural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
