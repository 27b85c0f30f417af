package daemon

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/executor"
)

// prober's probes: http and tcp inside the daemon, in the container's
// network namespace; exec in the container, as `reconciled exec`.

// dialInNetns connects to port on the loopback of the network namespace
// of p's container: 127.0.0.1, and ::1 when that is refused (a service
// that listens on ::1 only; docker's and Kubernetes' probes both reach it
// by address). The error is 127.0.0.1's unless ::1 was reached and
// refused too. The namespace is opened once per run (p.netnsFile); the
// connection is made in it (inNetns) and then used from any thread, as a
// socket stays in the namespace it was made in.
func dialInNetns(ctx context.Context, p *prober, port int) (net.Conn, error) {
	ns, err := p.netnsFile()
	if err != nil {
		return nil, err
	}
	var c net.Conn
	err = inNetns(ns, func() error {
		var d net.Dialer
		ps := strconv.Itoa(port)
		var err error
		c, err = d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", ps))
		if err == nil || !errors.Is(err, unix.ECONNREFUSED) {
			return err
		}
		c6, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", ps))
		if err6 == nil || errors.Is(err6, unix.ECONNREFUSED) {
			c = c6
			return err6
		}
		return err // no IPv6 here (disabled): 127.0.0.1's refusal
	})
	if err != nil && c != nil {
		c.Close()
		c = nil
	}
	return c, err
}

// netnsFile is the network namespace of p's container, opened at the first
// http or tcp probe of the run and kept until it ends (closeNetns). Only
// the run's goroutine calls it.
func (p *prober) netnsFile() (*os.File, error) {
	if p.netns == nil {
		ns, err := openNetns(p.pid, p.start)
		if err != nil {
			return nil, err
		}
		p.netns = ns
	}
	return p.netns, nil
}

// closeNetns closes what netnsFile opened, when the run's probing ends.
func (p *prober) closeNetns() {
	if p.netns != nil {
		p.netns.Close()
		p.netns = nil
	}
}

// probeTCP connects to the port and closes the connection.
func probeTCP(ctx context.Context, p *prober, port int) (bool, string) {
	c, err := dialInNetns(ctx, p, port)
	if err != nil {
		return false, "failed: " + dialError(ctx, err)
	}
	c.Close()
	return true, "connected"
}

// probeHTTP GETs path on the port: a status of 200-399 passes.
func probeHTTP(ctx context.Context, p *prober, hp *desired.HTTPProbe) (bool, string) {
	c, err := dialInNetns(ctx, p, hp.Port)
	if err != nil {
		return false, "failed: " + dialError(ctx, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// The Host is the address connected to, as Kubernetes' httpGet sends
	// the pod's IP: "127.0.0.1:8080" or "[::1]:8080".
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.RemoteAddr().String()+hp.Path, nil)
	if err != nil {
		return false, "failed: " + err.Error()
	}
	req.Header.Set("User-Agent", "reconciled-probe")
	req.Close = true
	if err := req.Write(c); err != nil {
		return false, "failed: " + dialError(ctx, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return false, "failed: " + dialError(ctx, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 400
	return ok, "returned " + strconv.Itoa(resp.StatusCode)
}

// dialError words a network error; a deadline is the probe's timeout.
func dialError(ctx context.Context, err error) string {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return "timed out"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var sc *os.SyscallError
		if errors.As(op.Err, &sc) {
			return sc.Err.Error() // "connection refused"
		}
		return op.Err.Error()
	}
	return err.Error()
}

// execer starts a process in a running container (executor.Runtime).
type execer interface {
	Exec(ctx context.Context, id string, o executor.ExecOptions) (*executor.ExecProcess, error)
}

// probeExec runs the command in the container, as `reconciled exec` does:
// exit 0 passes; past ctx's deadline (the probe's timeout, setup
// included) it is killed and counts as a failure.
func probeExec(ctx context.Context, rt execer, p *prober, args []string, timeout time.Duration) (bool, string) {
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

// probeWith returns the daemon's probe function: http and tcp in the
// container's network namespace, exec through rt.
func probeWith(rt execer) probeFunc {
	return func(ctx context.Context, p *prober, h *desired.Health) (bool, string) {
		switch {
		case h.HTTP != nil:
			return probeHTTP(ctx, p, h.HTTP)
		case h.TCP != nil:
			return probeTCP(ctx, p, h.TCP.Port)
		default:
			return probeExec(ctx, rt, p, h.Exec, h.Timeout)
		}
	}
}
