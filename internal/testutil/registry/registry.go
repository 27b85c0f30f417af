package registry

import (
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
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"reconciled.dev/reconciled/internal/testutil"
)

// Binary is where Debian's docker-registry package installs the registry.
const Binary = "/usr/bin/docker-registry"

// Registry is a running registry.
type Registry struct {
	// Addr is "IP:PORT".
	Addr string
	// StorageDir is the registry's filesystem storage root. A blob's
	// content is BlobPath(digest).
	StorageDir string
	// User and Password are set when it was started WithAuth.
	User, Password string

	t       testing.TB
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	stop    sync.Once
}

type settings struct {
	host       string
	user, pass string
}

// Option changes how Start runs the registry.
type Option func(*settings)

// WithAuth makes the registry require HTTP basic authentication with user
// and pass (an htpasswd file with a bcrypt hash).
func WithAuth(user, pass string) Option {
	return func(s *settings) { s.user, s.pass = user, pass }
}

// WithHost binds the registry to another loopback address than 127.0.0.1
// (e.g. "127.0.0.2"), which a client does not treat as local.
func WithHost(ip string) Option {
	return func(s *settings) { s.host = ip }
}

// Start runs a registry on a free port with its own storage under
// t.TempDir() and returns when it answers GET /v2/. It is killed (by PID)
// and waited for in t.Cleanup.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	bin := Binary
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("docker-registry")
		if lerr != nil {
			testutil.SkipOrFail(t, "docker-registry is not installed (%v); apt-get install docker-registry", err)
		}
		bin = p
	}
	s := settings{host: "127.0.0.1"}
	for _, o := range opts {
		o(&s)
	}
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	if err := os.Mkdir(storage, 0o700); err != nil {
		t.Fatal(err)
	}
	var auth string
	if s.user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(s.pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(s.user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: test-registry\n    path: %s\n", htpasswd)
	}
	var lastLog string
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(s.host)
		if err != nil {
			t.Fatalf("finding a free port on %s: %v", s.host, err)
		}
		addr := net.JoinHostPort(s.host, strconv.Itoa(port))
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
%s`, storage, addr, randomHex(16), auth)
		cfgPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		r := &Registry{
			Addr: addr, StorageDir: storage, User: s.user, Password: s.pass,
			t: t, exited: make(chan struct{}),
			logPath: filepath.Join(dir, fmt.Sprintf("registry-%d.log", attempt)),
		}
		if err := r.start(bin, cfgPath); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Stop)
		ready, err := r.waitReady(15 * time.Second)
		if ready {
			return r
		}
		r.Stop()
		lastLog = r.Log()
		if strings.Contains(lastLog, "address already in use") {
			continue // another process took the port meanwhile
		}
		t.Fatalf("registry on %s did not start: %v\n%s", addr, err, testutil.Tail(lastLog, 30))
	}
	t.Fatalf("registry did not start after 5 attempts:\n%s", testutil.Tail(lastLog, 30))
	return nil
}

func (r *Registry) start(bin, cfgPath string) error {
	logf, err := os.Create(r.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	r.cmd = exec.Command(bin, "serve", cfgPath)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	// No REGISTRY_* variables from the environment may override the
	// config file.
	r.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		r.cmd.Wait()
		close(r.exited)
	}()
	return nil
}

// waitReady polls GET /v2/ until it answers 200 or 401.
func (r *Registry) waitReady(timeout time.Duration) (bool, error) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			return false, fmt.Errorf("exited: %v", r.cmd.ProcessState)
		default:
		}
		resp, err := client.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return true, nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return false, fmt.Errorf("not ready after %v: %v", timeout, lastErr)
}

// Stop kills the registry process (the PID Start started, no other) and
// waits for it. It may be called more than once.
func (r *Registry) Stop() {
	r.stop.Do(func() {
		if r.cmd == nil || r.cmd.Process == nil {
			return
		}
		select {
		case <-r.exited:
			return
		default:
		}
		if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			r.t.Errorf("killing registry pid %d: %v", r.cmd.Process.Pid, err)
		}
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			r.t.Errorf("registry pid %d did not exit after SIGKILL", r.cmd.Process.Pid)
		}
	})
}

// Log is what the registry printed so far.
func (r *Registry) Log() string {
	data, _ := os.ReadFile(r.logPath)
	return string(data)
}

// Ref is the reference of repoTag ("app:1", "app@sha256:…") in this
// registry.
func (r *Registry) Ref(repoTag string) string { return r.Addr + "/" + repoTag }

// BlobPath is the file holding a blob's content in the registry's
// storage, for tests that tamper with it.
func (r *Registry) BlobPath(digest string) string {
	hexd := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.StorageDir, "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")
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
