package daemon

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/executor"
)

// exec probes, in the container as `reconciled exec` runs a process; http
// and tcp probes are netprobe.go's.

// closeRun closes what the run's probes opened (its probe server), when
// the run's probing ends.
func (p *prober) closeRun() {
	if p.server != nil {
		p.server.close(false)
		p.server = nil
	}
}

// execer starts a process in a running container (executor.Runtime).
type execer interface {
	Exec(ctx context.Context, id string, o executor.ExecOptions) (*executor.ExecProcess, error)
}

// probeExec runs the command in the container, through the run's probe
// server (probeserver.go) or else as `reconciled exec` does: exit 0
// passes; past ctx's deadline (the probe's timeout, setup included) it is
// killed and counts as a failure.
func probeExec(ctx context.Context, rt execer, p *prober, args []string, timeout time.Duration) (bool, string) {
	if ok, res, used := probeExecServer(ctx, rt, p, args, timeout, time.Now()); used {
		return ok, res
	}
	r, w, err := os.Pipe()
	if err != nil {
		return false, "failed: " + err.Error()
	}
	defer r.Close()
	proc, err := rt.Exec(ctx, p.name, executor.ExecOptions{Args: args, Stdout: w, Stderr: w})
	w.Close()
	if err != nil {
		if ctx.Err() != nil {
			return false, "timed out after " + timeout.String()
		}
		return false, "failed: " + err.Error()
	}
	out := make(chan string, 1)
	go func() {
		// Read what fits, then drain, so the command never blocks on a
		// full pipe; a child it left behind with the pipe open is cut off
		// by the deadline set below.
		b, _ := io.ReadAll(io.LimitReader(r, maxProbeOutput))
		io.Copy(io.Discard, r)
		out <- strings.TrimSpace(string(b))
	}()
	st, err := proc.Wait(ctx)
	if err != nil {
		// The timeout: kill it and reap it.
		proc.Signal(unix.SIGKILL)
		proc.Wait(context.WithoutCancel(ctx))
		r.SetReadDeadline(time.Now())
		<-out
		return false, "timed out after " + timeout.String() + " (killed)"
	}
	r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	text := <-out
	res := "exited with " + strconv.Itoa(st.Code)
	if text != "" {
		res += ": " + text
	}
	return st.Code == 0, res
}

// probeWith returns the daemon's exec probe function, through rt.
func probeWith(rt execer) probeFunc {
	return func(ctx context.Context, p *prober, h *desired.Health) (bool, string) {
		return probeExec(ctx, rt, p, h.Exec, h.Timeout)
	}
}
