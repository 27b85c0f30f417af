package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/bench/internal/daemonproc"
	"reconciled.dev/reconciled/internal/daemon"
)

// drop stages a manifest, opens the FIFO, renames the manifest into the
// directory and returns the time from the rename to the container's line.
func (b *bench) drop(ctx context.Context, name, manifest string, timeout time.Duration) (time.Duration, error) {
	staged := filepath.Join(b.staging, name+".yaml")
	if err := os.WriteFile(staged, []byte(manifest), 0o644); err != nil {
		return 0, err
	}
	fd, err := b.openFIFO()
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	t0 := time.Now()
	if err := os.Rename(staged, filepath.Join(b.manifests, name+".yaml")); err != nil {
		return 0, err
	}
	if err := b.waitFIFO(ctx, fd, name, timeout); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return time.Since(t0), nil
}

// openFIFO opens the read end without waiting for a writer: poll then
// reports POLLIN once the container has written, not before (Linux reports
// no hangup on a FIFO that never had a writer since the open).
func (b *bench) openFIFO() (int, error) {
	fd, err := unix.Open(b.fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("open "+b.fifo, err)
	}
	return fd, nil
}

// waitFIFO waits until the FIFO has data and reads it. While it waits it
// looks at the daemon (when name is set) once a second, so that a
// container that failed is reported with the daemon's reason instead of
// a timeout.
func (b *bench) waitFIFO(ctx context.Context, fd int, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 1000)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return os.NewSyscallError("poll", err)
		}
		if n > 0 && fds[0].Revents&unix.POLLIN != 0 {
			buf := make([]byte, 64)
			k, err := unix.Read(fd, buf)
			if err != nil {
				return os.NewSyscallError("read fifo", err)
			}
			if got := string(buf[:k]); got != "up\n" {
				return fmt.Errorf("the FIFO said %q", got)
			}
			return nil
		}
		if n > 0 && fds[0].Revents&unix.POLLHUP != 0 {
			return errors.New("the FIFO was closed without a line")
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if name != "" {
			select {
			case <-b.daemon.Exited():
				return errors.New("the daemon exited")
			default:
			}
			if c, err := b.status(ctx, name); err == nil && c != nil {
				if c.Phase == "invalid" || c.Phase == "exited" || c.Phase == "backoff" {
					return fmt.Errorf("phase %s: %s %s", c.Phase, c.Message, c.LastError)
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("not up after %s: phase %s: %s %s", timeout, c.Phase, c.Message, c.LastError)
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not up after %s", timeout)
		}
	}
}

// status is the daemon's status of name, nil when it lists no such
// container (what `reconciled status -o json` prints, over the same
// socket).
func (b *bench) status(ctx context.Context, name string) (*daemon.ContainerStatus, error) {
	var rep daemon.Report
	if err := daemon.Query(ctx, b.state, "/v1/status", &rep); err != nil {
		return nil, err
	}
	for i := range rep.Containers {
		if rep.Containers[i].Name == name {
			return &rep.Containers[i], nil
		}
	}
	return nil, nil
}

// remove deletes name's manifest and waits until the daemon no longer
// lists it.
func (b *bench) remove(ctx context.Context, name string) error {
	if err := os.Remove(filepath.Join(b.manifests, name+".yaml")); err != nil && !os.IsNotExist(err) {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := b.status(ctx, name)
		if err == nil && c == nil {
			return nil
		}
		if time.Now().After(deadline) {
			if c != nil {
				return fmt.Errorf("%s still listed after 60 s: phase %s: %s %s", name, c.Phase, c.Message, c.LastError)
			}
			return fmt.Errorf("%s: status: %v", name, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// imageRm removes the image from the store with the CLI (refused while a
// container uses it: the status files may lag the removal a moment) and
// checks that no blob or layer is left.
func (b *bench) imageRm(ctx context.Context, ref string) error {
	var err error
	for try := 0; try < 50; try++ {
		if err = command(ctx, nil, b.bin, "image", "rm", "--image-root", b.images, "--state", b.state, ref); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if n, err := storeEntries(b.images); err != nil || n != 0 {
		return fmt.Errorf("image rm %s left %d blobs and layers in %s (%v)", ref, n, b.images, err)
	}
	return nil
}

// storeEntries counts the blobs and unpacked layers in an image store.
func storeEntries(root string) (int, error) {
	n := 0
	for _, d := range []string{"blobs/sha256", "layers/sha256"} {
		es, err := os.ReadDir(filepath.Join(root, d))
		if err != nil && !os.IsNotExist(err) {
			return n, err
		}
		n += len(es)
	}
	return n, nil
}

func (b *bench) startDaemon(ctx context.Context) error {
	args := []string{"run", "--manifests", b.manifests, "--state", b.state, "--log-dir", b.logDir,
		"--image-root", b.images}
	if b.debug {
		args = append(args, "--debug")
	}
	d, err := daemonproc.Start(b.bin, b.daemonLog, args...)
	if err != nil {
		return err
	}
	b.daemon = d
	return d.WaitReady(ctx, b.state, func(rep *daemon.Report) bool { return rep.Daemon.Loaded })
}

// removeEverything removes our manifests and waits for their containers,
// stops the daemon with SIGTERM and deletes whatever container it left, and
// any crun container of ours.
func (b *bench) removeEverything() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if b.daemon != nil {
		entries, _ := os.ReadDir(b.manifests)
		for _, e := range entries {
			name, ok := strings.CutSuffix(e.Name(), ".yaml")
			if ok && strings.HasPrefix(name, b.id) {
				if err := b.remove(ctx, name); err != nil {
					fmt.Fprintln(os.Stderr, "imagebench: cleanup:", err)
				}
			}
		}
		if err := b.daemon.Stop(syscall.SIGTERM, 30*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "imagebench: cleanup:", err)
		}
		b.daemon = nil
	}
	root := filepath.Join(b.state, "runtime")
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if err := command(ctx, nil, b.bin, "runtime", "--root", root, "delete", "--force", e.Name()); err != nil {
			fmt.Fprintln(os.Stderr, "imagebench: cleanup:", err)
		}
	}
	if b.crunRoot != "" {
		entries, _ := os.ReadDir(b.crunRoot)
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), b.id) {
				var env []string
				if b.shim != "" {
					env = []string{"LD_PRELOAD=" + b.shim}
				}
				b.crunDelete(e.Name(), env)
			}
		}
	}
}
