// Package imageref parses and normalizes image references as docker does:
// "busybox" is docker.io/library/busybox:latest, "localhost:5000/app@sha256:…"
// keeps its registry and digest. It has no dependencies, so that desired
// (validation) and image (pulls) agree on what a reference means.
package imageref

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultRegistry and DefaultTag are what a reference without them gets.
const (
	DefaultRegistry = "docker.io"
	DefaultTag      = "latest"
	// officialPrefix is the repository path prefix of docker.io's one-part
	// names ("busybox" is docker.io/library/busybox).
	officialPrefix = "library/"
)

// Ref is a normalized reference.
type Ref struct {
	// Registry is the host[:port] ("docker.io", "localhost:5000").
	Registry string
	// Repository is the path within the registry ("library/busybox").
	Repository string
	// Tag is the tag; DefaultTag when the reference had neither tag nor
	// digest, "" when it had a digest alone.
	Tag string
	// Digest is "sha256:<64 hex>" when the reference names one.
	Digest string
}

// Name is registry/repository.
func (r Ref) Name() string { return r.Registry + "/" + r.Repository }

// String is the normalized reference: docker.io/library/busybox:latest,
// host/app:1.4@sha256:…, host/app@sha256:….
func (r Ref) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Short is the reference as docker shows it: the docker.io/ and library/
// prefixes dropped ("busybox:latest").
func (r Ref) Short() string {
	s := r.String()
	if r.Registry == DefaultRegistry {
		s = strings.TrimPrefix(s, DefaultRegistry+"/")
		s = strings.TrimPrefix(s, officialPrefix)
	}
	return s
}

// Insecure says whether the registry may be reached over plain HTTP
// without being named: localhost and 127.0.0.1 (any port), as docker does.
func (r Ref) Insecure() bool {
	host := r.Registry
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	return host == "localhost" || host == "127.0.0.1" || host == "[::1]"
}

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid image reference")

// Limits of the grammar (distribution/reference).
const (
	maxNameLen = 255
	maxTagLen  = 128
)

// Parse reads and normalizes a reference:
//
//	[registry/]path[:tag][@sha256:hex]
//
// A first component is a registry when it contains "." or ":" or is
// "localhost"; otherwise the registry is docker.io, and a one-component
// path there gets the library/ prefix. Path components are lowercase
// alphanumerics separated by ".", "_", "__" or runs of "-"; a tag is
// [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; a digest is sha256 with 64 lowercase
// hex digits. With neither tag nor digest the tag is latest.
func Parse(s string) (Ref, error) {
	bad := func(format string, a ...any) (Ref, error) {
		return Ref{}, fmt.Errorf("%w %q: %s", ErrInvalid, s, fmt.Sprintf(format, a...))
	}
	if s == "" {
		return bad("empty")
	}
	if strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\n\r") {
		return bad("contains white space")
	}
	if strings.HasPrefix(s, "sha256:") || (len(s) == 64 && isHex(s)) {
		return bad("a digest alone names no repository (write NAME@sha256:…)")
	}
	rest := s
	var r Ref
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		r.Digest, rest = rest[i+1:], rest[:i]
		if err := checkDigest(r.Digest); err != nil {
			return bad("%v", err)
		}
	}
	// A tag follows the last ':' after the last '/'.
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && i > strings.LastIndexByte(rest, '/') {
		r.Tag, rest = rest[i+1:], rest[:i]
		if err := checkTag(r.Tag); err != nil {
			return bad("%v", err)
		}
	}
	if rest == "" {
		return bad("no repository name (write e.g. busybox or registry.example.com/team/app:1.4)")
	}
	comps := strings.Split(rest, "/")
	if len(comps) > 1 && isRegistry(comps[0]) {
		r.Registry, comps = comps[0], comps[1:]
		if err := checkRegistry(r.Registry); err != nil {
			return bad("%v", err)
		}
	} else {
		r.Registry = DefaultRegistry
	}
	if r.Registry == "index.docker.io" || r.Registry == "registry-1.docker.io" {
		r.Registry = DefaultRegistry
	}
	for _, c := range comps {
		if err := checkComponent(c); err != nil {
			return bad("%v", err)
		}
	}
	r.Repository = strings.Join(comps, "/")
	if r.Registry == DefaultRegistry && len(comps) == 1 {
		r.Repository = officialPrefix + r.Repository
	}
	if len(r.Name()) > maxNameLen {
		return bad("name longer than %d characters", maxNameLen)
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = DefaultTag
	}
	return r, nil
}

// Normalize is Parse(s).String().
func Normalize(s string) (string, error) {
	r, err := Parse(s)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}

func isRegistry(c string) bool {
	return strings.ContainsAny(c, ".:") || c == "localhost" || strings.HasPrefix(c, "[")
}

func checkRegistry(h string) error {
	host, port := h, ""
	if strings.HasPrefix(h, "[") { // [ipv6]:port
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return fmt.Errorf("registry %q: unclosed [", h)
		}
		host, port = h[:end+1], strings.TrimPrefix(h[end+1:], ":")
		if h[end+1:] != "" && !strings.HasPrefix(h[end+1:], ":") {
			return fmt.Errorf("registry %q: junk after ]", h)
		}
		for _, c := range host[1 : len(host)-1] {
			if !(isHexRune(c) || c == ':' || c == '.') {
				return fmt.Errorf("registry %q: not an IPv6 address", h)
			}
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
		if port == "" {
			return fmt.Errorf("registry %q: empty port", h)
		}
	}
	if port != "" {
		for _, c := range port {
			if c < '0' || c > '9' {
				return fmt.Errorf("registry %q: port must be a number", h)
			}
		}
		if len(port) > 5 {
			return fmt.Errorf("registry %q: port out of range", h)
		}
	}
	if strings.HasPrefix(host, "[") {
		return nil
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" {
			return fmt.Errorf("registry %q: empty label", h)
		}
		for i, c := range label {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
				c == '-' && i > 0 && i < len(label)-1
			if !ok {
				return fmt.Errorf("registry %q: %q is not a host name label", h, label)
			}
		}
	}
	return nil
}

// checkComponent: [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
func checkComponent(c string) error {
	if c == "" {
		return fmt.Errorf("empty path component (no // and no / at either end)")
	}
	alnum := func(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }
	if !alnum(c[0]) || !alnum(c[len(c)-1]) {
		if strings.ToLower(c) != c {
			return fmt.Errorf("%q: repository names are lowercase", c)
		}
		return fmt.Errorf("%q: a path component starts and ends with a lowercase letter or digit", c)
	}
	for i := 0; i < len(c); {
		b := c[i]
		switch {
		case alnum(b):
			i++
		case b == '.':
			if !alnum(c[i+1]) {
				return fmt.Errorf("%q: separators are '.', '_', '__' or dashes between letters or digits", c)
			}
			i++
		case b == '_':
			n := 1
			if c[i+1] == '_' {
				n = 2
			}
			if !alnum(c[i+n]) {
				return fmt.Errorf("%q: separators are '.', '_', '__' or dashes between letters or digits", c)
			}
			i += n
		case b == '-':
			for i < len(c) && c[i] == '-' {
				i++
			}
			if !alnum(c[i]) {
				return fmt.Errorf("%q: separators are '.', '_', '__' or dashes between letters or digits", c)
			}
		case b >= 'A' && b <= 'Z':
			return fmt.Errorf("%q: repository names are lowercase", c)
		default:
			return fmt.Errorf("%q: %q is not allowed in a repository name", c, string(b))
		}
	}
	return nil
}

func checkTag(t string) error {
	if t == "" {
		return fmt.Errorf("empty tag after ':'")
	}
	if len(t) > maxTagLen {
		return fmt.Errorf("tag longer than %d characters", maxTagLen)
	}
	for i := 0; i < len(t); i++ {
		b := t[i]
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' ||
			i > 0 && (b == '.' || b == '-')
		if !ok {
			return fmt.Errorf("tag %q: letters, digits, '_', '.' and '-' (not first) only", t)
		}
	}
	return nil
}

func checkDigest(d string) error {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok {
		return fmt.Errorf("digest %q: only sha256:<64 hex digits> is supported", d)
	}
	if len(hex) != 64 || !isHex(hex) {
		return fmt.Errorf("digest %q: sha256 takes 64 lowercase hex digits", d)
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func isHexRune(c rune) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
