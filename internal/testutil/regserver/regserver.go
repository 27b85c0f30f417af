// Package regserver runs Debian's docker-registry (distribution 2.8) as a
// process of ours: it writes the registry's config, starts it on a free
// loopback port with its storage in a given directory, waits until GET
// /v2/ answers, and kills it by the PID it started. It reports errors
// instead of taking a testing.TB, so that both the tests (through
// internal/testutil/registry) and the benchmarks (bench/imagebench) start
// the registry the same way.
//
// It must not be imported by the daemon's code.
package regserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Binary is where Debian's docker-registry package installs the registry.
const Binary = "/usr/bin/docker-registry"

// Config says how to run a registry.
type Config struct {
	// Bin is the registry binary (Binary when empty).
	Bin string
	// Dir holds the config file, the logs and the storage (Dir/storage).
	Dir string
	// Host is the loopback address to bind (127.0.0.1 when empty).
	Host string
	// Extra is more top-level YAML for the config file (an auth: section).
	Extra string
}

// Server is a running registry.
type Server struct {
	// Addr is "IP:PORT".
	Addr string
	// StorageDir is the registry's filesystem storage root.
	StorageDir string

	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	stop    sync.Once
}

// Start runs a registry on a free port and returns once it answers GET
// /v2/ (200, or 401 when Extra asks for authentication). Another process
// may take the port between our choice and the registry's bind: then it
// tries another, five times at most.
func Start(ctx context.Context, c Config) (*Server, error) {
	bin, host := c.Bin, c.Host
	if bin == "" {
		bin = Binary
	}
	if host == "" {
		host = "127.0.0.1"
	}
	storage := filepath.Join(c.Dir, "storage")
	if err := os.MkdirAll(storage, 0o700); err != nil {
		return nil, err
	}
	var lastLog string
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(host)
		if err != nil {
			return nil, fmt.Errorf("finding a free port on %s: %w", host, err)
		}
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: %s
%s`, storage, addr, randomHex(16), c.Extra)
		cfgPath := filepath.Join(c.Dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		s := &Server{
			Addr: addr, StorageDir: storage, exited: make(chan struct{}),
			logPath: filepath.Join(c.Dir, fmt.Sprintf("registry-%d.log", attempt)),
		}
		if err := s.start(bin, cfgPath); err != nil {
			return nil, err
		}
		err = s.waitReady(ctx, 15*time.Second)
		if err == nil {
			return s, nil
		}
		stopErr := s.Stop()
		lastLog = s.Log()
		if stopErr == nil && strings.Contains(lastLog, "address already in use") {
			continue // another process took the port meanwhile
		}
		return nil, errors.Join(fmt.Errorf("registry on %s did not start: %w\n%s", addr, err, tail(lastLog, 30)), stopErr)
	}
	return nil, fmt.Errorf("registry did not start after 5 attempts:\n%s", tail(lastLog, 30))
}

func (s *Server) start(bin, cfgPath string) error {
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd = exec.Command(bin, "serve", cfgPath)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// No REGISTRY_* variables from the environment may override the
	// config file.
	s.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s (apt-get install docker-registry): %w", bin, err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	return nil
}

// waitReady polls GET /v2/ until it answers 200 or 401.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("exited: %v", s.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := client.Get("http://" + s.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", timeout, lastErr)
}

// Stop kills the registry process (the PID Start started, no other) and
// waits for it. It may be called more than once; only the first call
// kills, and says what went wrong.
func (s *Server) Stop() error {
	var err error
	s.stop.Do(func() {
		select {
		case <-s.exited:
			return
		default:
		}
		if kerr := s.cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
			err = fmt.Errorf("killing registry pid %d: %w", s.cmd.Process.Pid, kerr)
			return
		}
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			err = fmt.Errorf("registry pid %d did not exit after SIGKILL", s.cmd.Process.Pid)
		}
	})
	return err
}

// Log is what the registry printed so far.
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.logPath)
	return string(data)
}

// freePort asks the kernel for a free TCP port on host and releases it.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
