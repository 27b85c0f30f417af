//go:build !reconciled_lean

package main

import (
	"context"
	"errors"
	"io"

	"reconciled.dev/reconciled/internal/daemon"
)

// The daemon-level commands that operate a running container: they act on
// STATE/runtime directly through the executor, with or without a daemon
// (which is told: refreshDaemon). Not in the container stages' binary
// (reconciled_lean: packaging/build.sh), which runs `runtime` and
// reconciled-runc only.
func init() {
	register(&command{
		name:    "exec",
		summary: "run a command in a running container",
		run: func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
			return execCommand(ctx, "exec", "", args, stdout, stderr, nil)
		},
	})
	for _, c := range []struct{ name, summary string }{
		{"pause", "freeze every process of a container"},
		{"resume", "thaw a paused container"},
		{"ps", "list the processes of a container"},
		{"stats", "memory, CPU and PIDs of one or every container"},
		{"kill", "signal a container's init, or with --all every process"},
	} {
		name := c.name
		register(&command{
			name:    name,
			summary: c.summary,
			run: func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
				return opsCommand(ctx, name, "", args, stdout, stderr)
			},
		})
	}
	refreshDaemon = func(ctx context.Context, state, name string) error {
		if err := daemon.Refresh(ctx, state, name); err != nil && !errors.Is(err, daemon.ErrNoDaemon) {
			return err
		}
		return nil
	}
}
