//go:build !reconciled_lean

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/internal/daemon"
	"reconciled.dev/reconciled/reconciler"
)

func init() {
	register(&command{
		name:    "plan",
		summary: "show what run would do now, with reasons, without doing it",
		run:     runPlan,
	})
}

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("plan", "plan [--manifests DIR] [--state DIR] [--image-root DIR] [--insecure-manifests] [-o text|json]", stderr)
	manifests := fs.String("manifests", daemon.DefaultManifests, "directory of manifests")
	state := fs.String("state", daemon.DefaultState, "the daemon's state directory")
	insecure := fs.Bool("insecure-manifests", false, "do not refuse manifests that are writable by group or others or not owned by root")
	output := fs.String("o", "text", "output format: text or json")
	imageRoot := fs.String("image-root", image.DefaultRoot, "the image store (images not in it would be pulled)")
	if _, ok := parseArgs(fs, args, 0, 0); !ok {
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "reconciled plan: -o %q: use text or json\n", *output)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "reconciled plan: %s\n", termSafe(err.Error()))
		return 1
	}
	layout := daemon.Layout(*state)
	store, err := actual.OpenStore(layout.Runtime(), layout.Records(), actual.StoreOptions{})
	if err != nil {
		if store == nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "reconciled plan: warning: %s\n", termSafe(err.Error()))
	}
	// Start from what the containers were created from, as the daemon
	// does, so that an invalid file keeps its last good definitions.
	loader := desired.NewLoader(*manifests, desired.Options{InsecureManifests: *insecure}, daemon.Seed(store.Records()))
	want, _, err := loader.Load()
	if err != nil {
		if errors.Is(err, desired.ErrNotExist) {
			return fail(fmt.Errorf("%w (the daemon keeps the last state for a while, then removes every container)", err))
		}
		return fail(err)
	}
	have, err := store.Observe(ctx)
	if err != nil {
		return fail(err)
	}
	if want, err = daemon.ResolveOffline(ctx, *imageRoot, *state, want, have); err != nil {
		return fail(err)
	}
	res := reconciler.Planner{ChangedFields: desired.ChangedFields}.Plan(want, have, time.Now())
	if *output == "json" {
		return printJSON(stdout, stderr, res)
	}
	printPlan(stdout, res, want)
	return 0
}

// printPlan prints each container's actions under the reason for them, and
// what stays as it is for a reason worth saying (backoff, invalid files).
func printPlan(w io.Writer, res *reconciler.Result, want desired.Set) {
	n := 0
	for _, cp := range res.Containers {
		st := cp.Status
		if len(cp.Actions) == 0 || (len(cp.Actions) == 1 && cp.Actions[0].Kind == reconciler.Wait) {
			if st.Reason != "" {
				fmt.Fprintf(w, "%s: nothing now; %s\n", termSafe(st.Name), termSafe(st.Reason))
			}
			continue
		}
		reason := ""
		for _, a := range cp.Actions {
			if a.Kind == reconciler.Wait {
				continue
			}
			if a.Reason != reason {
				reason = a.Reason
				fmt.Fprintf(w, "%s: %s\n", termSafe(st.Name), termSafe(reason))
			}
			fmt.Fprintf(w, "  %s\n", termSafe(actionText(a)))
			n++
		}
	}
	for _, e := range want.Errors() {
		fmt.Fprintf(w, "invalid: %s\n", termSafe(e.Error()))
	}
	if n == 0 {
		fmt.Fprintln(w, "nothing to do now")
	}
}

// actionText is one action without its reason: "stop SIGTERM, SIGKILL after 10s".
func actionText(a reconciler.Action) string {
	switch a.Kind {
	case reconciler.Stop:
		if a.All {
			return "kill every process left in the cgroup (" + a.Signal + ")"
		}
		if a.Timeout <= 0 {
			return "stop with " + a.Signal
		}
		return fmt.Sprintf("stop with %s, SIGKILL after %s", a.Signal, a.Timeout)
	case reconciler.Create:
		s := "create"
		if a.Desired != nil {
			s += " from " + filepath.Base(a.Desired.Source)
		}
		if a.Restarts > 0 {
			s += fmt.Sprintf(" (restart %d)", a.Restarts)
		}
		return s
	case reconciler.Delete:
		if a.Forget {
			return "delete, and forget it"
		}
		return "delete"
	case reconciler.Update:
		return "update its cgroup in place"
	}
	return string(a.Kind)
}
