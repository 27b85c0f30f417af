// Package daemonproc runs `reconciled run` for a benchmark: it starts the
// daemon with its output appended to a log file, waits until the daemon
// answers on its socket, stops it, and unmounts what it leaves in its
// state directory. It decides nothing about what the daemon runs.
package daemonproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/daemon"
)

// Daemon is a started `reconciled run`.
type Daemon struct {
	Cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// Start starts bin with args (its first being "run"), its stdout and
// stderr appended to logPath.
func Start(bin, logPath string, args ...string) (*Daemon, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &Daemon{Cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); close(d.exited) }()
	return d, nil
}

// Pid is the daemon's process ID.
func (d *Daemon) Pid() int { return d.Cmd.Process.Pid }

// Exited is closed when the daemon has exited; nil (never ready) for a nil
// Daemon.
func (d *Daemon) Exited() <-chan struct{} {
	if d == nil {
		return nil
	}
	return d.exited
}

// WaitReady polls the daemon's /v1/status under state until ready says
// yes (nil: any answer will do), for 30 s at most.
func (d *Daemon) WaitReady(ctx context.Context, state string, ready func(*daemon.Report) bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rep daemon.Report
		if err := daemon.Query(ctx, state, "/v1/status", &rep); err == nil && (ready == nil || ready(&rep)) {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("the daemon exited; see %s", d.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the daemon does not answer")
		}
	}
}

// Stop sends sig and waits for the daemon to exit; after timeout it kills
// the daemon, waits, and says so.
func (d *Daemon) Stop(sig syscall.Signal, timeout time.Duration) error {
	d.Cmd.Process.Signal(sig)
	select {
	case <-d.exited:
		return nil
	case <-time.After(timeout):
		d.Cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("the daemon did not stop on %s within %s; killed it", unix.SignalName(sig), timeout)
	}
}

// UnmountRootfs unmounts the image roots the daemon mounted under
// STATE/rootfs and then its shared bind of STATE/rootfs itself, so that
// the state directory holds no mount when it is removed.
func UnmountRootfs(state string) {
	rootfs := filepath.Join(state, "rootfs")
	entries, _ := os.ReadDir(rootfs)
	for _, e := range entries {
		for unix.Unmount(filepath.Join(rootfs, e.Name()), unix.MNT_DETACH) == nil {
		}
	}
	for unix.Unmount(rootfs, unix.MNT_DETACH) == nil {
	}
}
