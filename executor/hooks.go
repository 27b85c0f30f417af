package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/sys"
)

// runHooks runs hooks in order, each with the container's state JSON on its
// stdin and its own timeout; the first failure stops the run and is returned
// as a *HookError naming the hook.
func runHooks(ctx context.Context, kind string, hooks []specs.Hook, state []byte) error {
	return runHookList(ctx, kind, hooks, state, true)
}

// runAllHooks runs hooks in order as runHooks does, but a failure does not
// stop the run: for poststart and poststop hooks the runtime-spec says a
// failure is a warning and "the remaining hooks and lifecycle continue as
// if the hook had succeeded". The failures come back joined, each a
// *HookError.
func runAllHooks(ctx context.Context, kind string, hooks []specs.Hook, state []byte) error {
	return runHookList(ctx, kind, hooks, state, false)
}

func runHookList(ctx context.Context, kind string, hooks []specs.Hook, state []byte, stopAtFailure bool) error {
	var errs []error
	for i, h := range hooks {
		if err := runHook(ctx, h, state); err != nil {
			errs = append(errs, &HookError{Kind: kind, Index: i, Path: h.Path, Err: err})
			if stopAtFailure {
				break
			}
		}
	}
	return errors.Join(errs...)
}

func runHook(ctx context.Context, h specs.Hook, state []byte) error {
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("timeout must be positive, got %d", *h.Timeout)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, time.Duration(*h.Timeout)*time.Second,
			fmt.Errorf("timed out after %ds", *h.Timeout))
		defer cancel()
	}
	args := h.Args
	if len(args) == 0 {
		args = []string{h.Path}
	}
	cmd := &exec.Cmd{
		Path:  h.Path,
		Args:  args,
		Env:   h.Env,
		Stdin: bytes.NewReader(state),
	}
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	var out limitedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = time.Second // a hook's leftover child may hold the pipe
	// A hook runs as the runtime was started, not as its batch threads
	// (sys.Batch).
	if err := sys.AsStarted(cmd.Start); err != nil {
		return err
	}
	err := waitCmd(ctx, cmd)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if msg := strings.TrimSpace(out.String()); msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

// waitCmd waits for cmd, killing it when ctx ends.
func waitCmd(ctx context.Context, cmd *exec.Cmd) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cmd.Process.Kill()
		err := <-done
		return errors.Join(context.Cause(ctx), err)
	}
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}
