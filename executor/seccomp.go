package executor

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/internal/seccomp"
)

// filterCache holds compiled seccomp filters by profile: a daemon's
// containers share a handful of profiles (the default one for most), and
// compiling Docker's default takes about a millisecond, hashing it some
// microseconds.
type filterCache struct {
	mu    sync.Mutex
	progs map[[sha256.Size]byte]*seccomp.Program
}

// maxCachedFilters bounds the cache; past it, it starts over.
const maxCachedFilters = 64

// seccompFilter compiles s for this machine (nil s: nil, no filter),
// through the runtime's cache.
func (r *Runtime) seccompFilter(s *specs.LinuxSeccomp) (*seccomp.Program, error) {
	if s == nil {
		return nil, nil
	}
	key := profileKey(s)
	c := &r.filters
	c.mu.Lock()
	p, ok := c.progs[key]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := seccomp.Compile(s, runtime.GOARCH)
	if err != nil {
		return nil, fmt.Errorf("linux.seccomp: %w", err)
	}
	c.mu.Lock()
	if c.progs == nil || len(c.progs) >= maxCachedFilters {
		c.progs = map[[sha256.Size]byte]*seccomp.Program{}
	}
	c.progs[key] = p
	c.mu.Unlock()
	return p, nil
}

// profileKey hashes every field of s that the compiler reads, each
// length-prefixed, so that two profiles share a key only if they are the
// same.
func profileKey(s *specs.LinuxSeccomp) [sha256.Size]byte {
	b := make([]byte, 0, 16<<10)
	str := func(v string) {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	num := func(v uint64) { b = binary.AppendUvarint(b, v) }
	opt := func(v *uint) {
		if v == nil {
			num(0)
			return
		}
		num(1)
		num(uint64(*v))
	}
	str(string(s.DefaultAction))
	opt(s.DefaultErrnoRet)
	str(s.ListenerPath)
	num(uint64(len(s.Architectures)))
	for _, a := range s.Architectures {
		str(string(a))
	}
	num(uint64(len(s.Flags)))
	for _, f := range s.Flags {
		str(string(f))
	}
	num(uint64(len(s.Syscalls)))
	for _, sc := range s.Syscalls {
		num(uint64(len(sc.Names)))
		for _, n := range sc.Names {
			str(n)
		}
		str(string(sc.Action))
		opt(sc.ErrnoRet)
		num(uint64(len(sc.Args)))
		for _, a := range sc.Args {
			num(uint64(a.Index))
			num(a.Value)
			num(a.ValueTwo)
			str(string(a.Op))
		}
	}
	return sha256.Sum256(b)
}

// withoutSeccomp is s with no linux.seccomp (a shallow copy where it had
// one): the init gets the compiled filter instead of the profile, which
// it would only decode for nothing.
func withoutSeccomp(s *specs.Spec) *specs.Spec {
	if s.Linux == nil || s.Linux.Seccomp == nil {
		return s
	}
	c := *s
	l := *s.Linux
	l.Seccomp = nil
	c.Linux = &l
	return &c
}

// installEarly installs f now when the process has no no_new_privs
// (runc's order): loading a filter then takes CAP_SYS_ADMIN, which is
// gone once the spec's user and capabilities are set. With no_new_privs
// it returns f, to be installed right before the exec.
func installEarly(f *seccomp.Program, noNewPrivs bool) (late *seccomp.Program, err error) {
	if f == nil || noNewPrivs {
		return f, nil
	}
	return nil, f.Install()
}
