package daemon

import (
	"bufio"
	"context"
	"errors"
	"io"
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

// connectInNetns connects to port on the loopback of the network
// namespace of p's container: 127.0.0.1, and ::1 when that is refused (a
// service that listens on ::1 only; docker's and Kubernetes' probes both
// reach it by address). The error is 127.0.0.1's unless ::1 was reached
// and refused too. It returns the connection, a non-blocking socket on
// the runtime's poller, and the address it reached ("127.0.0.1:8080",
// "[::1]:8080").
func connectInNetns(ctx context.Context, p *prober, port int) (*os.File, string, error) {
	ns, err := p.netnsFile()
	if err != nil {
		return nil, "", err
	}
	ps := strconv.Itoa(port)
	f, err := connectTo(ctx, ns, unix.AF_INET, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	if err == nil {
		return f, "127.0.0.1:" + ps, nil
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return nil, "", err
	}
	f, err6 := connectTo(ctx, ns, unix.AF_INET6, &unix.SockaddrInet6{Port: port, Addr: [16]byte{15: 1}})
	switch {
	case err6 == nil:
		return f, "[::1]:" + ps, nil
	case errors.Is(err6, unix.ECONNREFUSED):
		return nil, "", err6
	}
	return nil, "", err // no IPv6 here (disabled): 127.0.0.1's refusal
}

// connectTo makes a TCP socket of family in network namespace ns and
// connects it to sa. Only the socket is made in the namespace
// (socketInNetns):
// a socket stays in the namespace it was made in, so the connection is
// completed by this goroutine, on the poller, like any other. Over
// loopback the handshake is usually over when connect returns.
func connectTo(ctx context.Context, ns *os.File, family int, sa unix.Sockaddr) (*os.File, error) {
	fd, err := socketInNetns(ns, family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	err = unix.Connect(fd, sa)
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	f := os.NewFile(uintptr(fd), "probe") // non-blocking: on the poller
	if err == nil {
		return f, nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	var connErr error
	err = rc.Write(func(fd uintptr) bool {
		// Writable (or failed) once the handshake is over.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if n, _ := unix.Poll(pfd, 0); n == 0 {
			return false // wait on the poller
		}
		switch e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); {
		case err != nil:
			connErr = os.NewSyscallError("getsockopt", err)
		case e != 0:
			connErr = os.NewSyscallError("connect", unix.Errno(e))
		}
		return true
	})
	if err == nil {
		err = connErr
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
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

// closeRun closes what the run's probes opened (its network namespace,
// its probe server), when the run's probing ends.
func (p *prober) closeRun() {
	if p.netns != nil {
		p.netns.Close()
		p.netns = nil
	}
	if p.server != nil {
		p.server.close(false)
		p.server = nil
	}
}

// probeTCP connects to the port and closes the connection.
func probeTCP(ctx context.Context, p *prober, port int) (bool, string) {
	f, _, err := connectInNetns(ctx, p, port)
	if err != nil {
		return false, "failed: " + dialError(ctx, err)
	}
	f.Close()
	return true, "connected"
}

// probeHTTP GETs path on the port: a status of 200-399 passes. The
// request is written by hand (it never changes); the response is read by
// net/http, which knows where its body ends, and its body up to 64 KiB.
func probeHTTP(ctx context.Context, p *prober, hp *desired.HTTPProbe) (bool, string) {
	f, host, err := connectInNetns(ctx, p, hp.Port)
	if err != nil {
		return false, "failed: " + dialError(ctx, err)
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// The Host is the address connected to, as Kubernetes' httpGet sends
	// the pod's IP.
	req := "GET " + hp.Path + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: reconciled-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(f, req); err != nil {
		return false, "failed: " + dialError(ctx, err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(f, 1024), nil)
	if err != nil {
		return false, "failed: " + dialError(ctx, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 400
	return ok, "returned " + strconv.Itoa(resp.StatusCode)
}

// dialError words a network error: "connection refused"; a deadline is
// the probe's timeout.
func dialError(ctx context.Context, err error) string {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return "timed out"
	}
	var sc *os.SyscallError
	var pe *os.PathError
	switch {
	case errors.As(err, &sc):
		return sc.Err.Error()
	case errors.As(err, &pe):
		return pe.Err.Error()
	}
	return err.Error()
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
