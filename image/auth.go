package image

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHubAuthKey is the key under which docker stores docker.io's
// credentials in config.json.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// configKeychain resolves credentials from a docker config.json: its
// auths, or the credential helpers it names (credsStore, credHelpers). The
// file is read at each Resolve, so a `docker login` takes effect at the
// next pull; a missing file means anonymous.
type configKeychain struct{ path string }

var _ authn.Keychain = configKeychain{}

func (k configKeychain) load() (*configfile.ConfigFile, error) {
	f, err := os.Open(k.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading registry credentials: %w", err)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("reading registry credentials %s: %w", k.path, err)
	}
	cf.Filename = k.path
	return cf, nil
}

// Resolve implements authn.Keychain.
func (k configKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	cf, err := k.load()
	if err != nil || cf == nil {
		return authn.Anonymous, err
	}
	key := res.RegistryStr()
	if key == name.DefaultRegistry || key == "docker.io" || key == "registry-1.docker.io" {
		key = dockerHubAuthKey
	}
	ac, err := cf.GetAuthConfig(key)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s from %s: %w", res.RegistryStr(), k.path, err)
	}
	cfg := authn.AuthConfig{
		Username:      ac.Username,
		Password:      ac.Password,
		Auth:          ac.Auth,
		IdentityToken: ac.IdentityToken,
		RegistryToken: ac.RegistryToken,
	}
	if cfg == (authn.AuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(cfg), nil
}

// plainHTTPAllowed says whether host[:port] may be reached over plain
// HTTP: loopback names and addresses always (as imageref.Ref.Insecure), and
// the entries of insecure, either host:port exactly or a host alone, which
// then stands for all its ports.
func plainHTTPAllowed(hostport string, insecure []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" || host == "127.0.0.1" || host == "::1" {
		return true
	}
	for _, e := range insecure {
		if strings.EqualFold(e, hostport) || strings.EqualFold(strings.Trim(e, "[]"), host) {
			return true
		}
	}
	return false
}

// httpGuard refuses plain HTTP requests to hosts not allowed: go-
// containerregistry falls back to http by itself for private addresses and
// .local names, and would follow an http token realm or redirect.
type httpGuard struct {
	inner    http.RoundTripper
	insecure []string
}

// errPlainHTTP is wrapped by the refusal.
var errPlainHTTP = errors.New("plain HTTP refused: HTTPS is required unless the registry is listed as insecure")

func (g httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !plainHTTPAllowed(req.URL.Host, g.insecure) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%s: %w", req.URL.Host, errPlainHTTP)
	}
	return g.inner.RoundTrip(req)
}
