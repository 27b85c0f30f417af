package registry

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/internal/testutil/regserver"
)

// Binary is where Debian's docker-registry package installs the registry.
const Binary = regserver.Binary

// Registry is a running registry.
type Registry struct {
	// Addr is "IP:PORT".
	Addr string
	// StorageDir is the registry's filesystem storage root. A blob's
	// content is BlobPath(digest).
	StorageDir string
	// User and Password are set when it was started WithAuth.
	User, Password string

	t   testing.TB
	srv *regserver.Server
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
	srv, err := regserver.Start(t.Context(), regserver.Config{Bin: bin, Dir: dir, Host: s.host, Extra: auth})
	if err != nil {
		t.Fatal(err)
	}
	r := &Registry{Addr: srv.Addr, StorageDir: srv.StorageDir, User: s.user, Password: s.pass, t: t, srv: srv}
	t.Cleanup(r.Stop)
	return r
}

// Stop kills the registry process (the PID Start started, no other) and
// waits for it. It may be called more than once.
func (r *Registry) Stop() {
	if err := r.srv.Stop(); err != nil {
		r.t.Errorf("%v", err)
	}
}

// Log is what the registry printed so far.
func (r *Registry) Log() string { return r.srv.Log() }

// Ref is the reference of repoTag ("app:1", "app@sha256:…") in this
// registry.
func (r *Registry) Ref(repoTag string) string { return r.Addr + "/" + repoTag }

// BlobPath is the file holding a blob's content in the registry's
// storage, for tests that tamper with it.
func (r *Registry) BlobPath(digest string) string {
	hexd := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.StorageDir, "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")
}
