package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// D-Bus error names the driver acts on.
const (
	errUnitExists   = "org.freedesktop.systemd1.UnitExists"
	errNoSuchUnit   = "org.freedesktop.systemd1.NoSuchUnit"
	errNotSupported = "org.freedesktop.DBus.Error.NotSupported"
	errUnknownMeth  = "org.freedesktop.DBus.Error.UnknownMethod"
)

// SystemdSocket is systemd's private D-Bus socket (root only), what
// go-systemd's NewSystemdConnectionContext dials.
const SystemdSocket = "/run/systemd/private"

// dialSystemd connects to systemd's private socket. The connection lives
// until life ends (or Close); the dial itself gives up when ctx ends.
func dialSystemd(ctx, life context.Context, socket string) (*sddbus.Conn, error) {
	type result struct {
		c   *sddbus.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// go-systemd dials twice, one connection for calls and one for
		// signals. On its private socket systemd sends every signal to
		// every connection, so a second one only doubles what this
		// process reads (6-7 signals per scope started): both get the
		// same connection (Close of it twice is harmless).
		var shared *godbus.Conn
		c, err := sddbus.NewConnection(func() (*godbus.Conn, error) {
			if shared != nil {
				return shared, nil
			}
			conn, err := godbus.Dial("unix:path="+socket, godbus.WithContext(life))
			if err != nil {
				return nil, err
			}
			// EXTERNAL by uid, no user lookup (as go-systemd does).
			if err := conn.Auth([]godbus.Auth{godbus.AuthExternal(fmt.Sprint(os.Getuid()))}); err != nil {
				conn.Close()
				return nil, err
			}
			shared = conn
			return conn, nil
		})
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("connecting to systemd at %s: %w: %w", socket, ErrSystemdUnavailable, r.err)
		}
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, fmt.Errorf("connecting to systemd at %s: %w: %w", socket, ErrSystemdUnavailable, context.Cause(ctx))
	}
}

// getConn returns the live connection, dialling a new one when there is
// none or systemd dropped it.
func (d *Systemd) getConn(ctx context.Context) (*sddbus.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.base.Err() != nil {
		return nil, errDriverClosed
	}
	if d.conn != nil && d.conn.Connected() {
		return d.conn, nil
	}
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
		d.log.Info("systemd connection lost; reconnecting")
	}
	c, err := dialSystemd(ctx, d.base, d.socket)
	if err != nil {
		return nil, err
	}
	d.conn = c
	return c, nil
}

// drop closes c, a connection that failed a write, so that the next
// getConn dials a new one. After a daemon-reexec a write can fail (EPIPE)
// before godbus has read the end of the connection and marked it closed:
// c.Connected() still says yes.
func (d *Systemd) drop(c *sddbus.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == c {
		d.conn = nil
	}
	c.Close()
}

// connBroken reports whether err says the connection itself failed (the
// peer went away), not the call.
func connBroken(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, godbus.ErrClosed)
}

// errDriverClosed is what a closed driver returns.
var errDriverClosed = errors.New("systemd driver: closed")

// errJobLost is what waitJob returns when the connection a job was queued
// on dropped before the job's JobRemoved signal came, and the unit's state
// does not (yet) show the job's goal: job then queues it once more.
var errJobLost = errors.New("the connection to systemd dropped before the job's result came")

// withTimeout gives ctx the driver's job timeout when it has no deadline.
func (d *Systemd) withTimeout(ctx context.Context, what string) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, d.jobTimeout, fmt.Errorf("%s took over %s", what, d.jobTimeout))
}

// call runs op on the connection. When op fails because systemd dropped
// the connection (daemon-reexec, bus restart), it reconnects, retrying
// the dial until ctx ends (systemd may be re-executing), and runs op
// again.
func (d *Systemd) call(ctx context.Context, op func(*sddbus.Conn) error) error {
	wait := 5 * time.Millisecond
	for {
		c, err := d.getConn(ctx)
		if err == nil {
			err = op(c)
			if err == nil || isDBusError(err, "") || c.Connected() && !connBroken(err) {
				return err
			}
			d.drop(c)
			d.log.Info("systemd dropped the connection; reconnecting", "err", err)
		}
		if errors.Is(err, errDriverClosed) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up reconnecting: %w)", err, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// isDBusError reports whether err is a D-Bus error reply named name (any
// name when name is "").
func isDBusError(err error, name string) bool {
	var e godbus.Error
	if errors.As(err, &e) {
		return name == "" || e.Name == name
	}
	var pe *godbus.Error
	if errors.As(err, &pe) && pe != nil {
		return name == "" || pe.Name == name
	}
	return false
}

// job queues a job (queue, on the driver's connection, with ch to receive
// its result) and waits for it (waitJob). When the connection it was
// queued on drops first (errJobLost), it queues the job once more, on the
// new connection: systemd merges it into the same job when that is still
// running after a re-exec, or finishes it at once when the goal was
// reached meanwhile. queue's own errors are returned as they are.
func (d *Systemd) job(ctx context.Context, what string, queue func(c *sddbus.Conn, ch chan<- string) error, check func(context.Context) (bool, error)) error {
	for attempt := 0; ; attempt++ {
		ch := make(chan string, 1)
		var used *sddbus.Conn
		err := d.call(ctx, func(c *sddbus.Conn) error {
			used = c
			return queue(c, ch)
		})
		if err != nil {
			return err
		}
		err = d.waitJob(ctx, used, ch, what, check)
		if !errors.Is(err, errJobLost) || attempt > 0 {
			return err
		}
		d.log.Info("systemd dropped the connection during a job; queueing it again", "job", what)
	}
}

// lost reports whether used, the connection a job was queued on, can no
// longer deliver the job's JobRemoved signal: systemd dropped it, or
// another call already replaced it (then used is dead too, and checking
// only the driver's current connection would wait for a signal that never
// comes).
func (d *Systemd) lost(used *sddbus.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return used != d.conn || !used.Connected()
}

// waitJob waits for the result of a job queued on used, on ch. When used
// is lost (lost), check decides from the unit's state, read on the current
// connection, whether the job's goal was reached: yes is success, no is
// errJobLost. When ctx ends first, check decides too.
func (d *Systemd) waitJob(ctx context.Context, used *sddbus.Conn, ch <-chan string, what string, check func(context.Context) (bool, error)) error {
	result := func(res string) error {
		if res == "done" {
			return nil
		}
		return fmt.Errorf("%s: systemd job %s", what, res)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case res := <-ch:
			return result(res)
		case <-tick.C:
			if !d.lost(used) {
				continue
			}
			// The result may have come just before the drop.
			select {
			case res := <-ch:
				return result(res)
			default:
			}
			ok, err := check(ctx)
			if err != nil {
				return fmt.Errorf("%s: the connection to systemd dropped during the job: %w", what, err)
			}
			if ok {
				return nil
			}
			return fmt.Errorf("%s: %w", what, errJobLost)
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			ok, err := check(cctx)
			cancel()
			if err == nil && ok {
				return nil
			}
			return fmt.Errorf("%s: waiting for the systemd job: %w", what, context.Cause(ctx))
		}
	}
}
