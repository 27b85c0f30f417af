package ociruntime

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/cgroups"
)

// Native is the name of reconciled's own executor as manifests give it
// (spec.runtime). A container it runs carries no AnnotationRuntime.
const Native = "native"

// defaultBinaries are the runtimes every daemon has (looked up in PATH),
// unless configured otherwise.
var defaultBinaries = map[string]string{"runc": "runc", "crun": "crun"}

// Runtimes are the OCI-CLI runtimes a daemon is configured with, by name,
// and the choice, per container, between one of them and the native
// executor: a create goes to the runtime its spec names, every later
// operation to the one its state names (so a container is always stopped
// and deleted by the runtime that made it). A runtime that cannot be made
// keeps its error, reported by each container that asks for it, never
// the daemon's. Safe for concurrent use (byName is read-only once made).
type Runtimes struct {
	byName map[string]configured
	// names remembers the runtime each container's state named (id →
	// name, "" for the native executor): it does not change while the
	// container exists, and Of is asked at every start, kill and wait.
	// The caller says when a container is created and deleted
	// (Remember, Forget).
	names       sync.Map
	stateRoot   string
	runtimeRoot string
	cg          cgroups.Driver
	log         *slog.Logger
}

// configured is one runtime, or why it cannot be used.
type configured struct {
	rt  *Runtime
	err error
}

// NewRuntimes makes the OCI-CLI runtimes: runc and crun (looked up in
// PATH) and those of paths (name → binary), which may replace them. Their
// containers' state is under stateRoot (the native executor's root), each
// runtime's own --root is runtimeRoot/NAME; cg and log are each runtime's
// (see Config).
func NewRuntimes(paths map[string]string, stateRoot, runtimeRoot string, cg cgroups.Driver, log *slog.Logger) *Runtimes {
	all := make(map[string]string, len(defaultBinaries)+len(paths))
	for n, p := range defaultBinaries {
		all[n] = p
	}
	for n, p := range paths {
		all[n] = p
	}
	s := &Runtimes{byName: make(map[string]configured, len(all)), stateRoot: stateRoot, runtimeRoot: runtimeRoot, cg: cg, log: log}
	for n, p := range all {
		rt, err := s.make(n, p)
		s.byName[n] = configured{rt: rt, err: err}
	}
	return s
}

func (s *Runtimes) make(name, path string) (*Runtime, error) {
	return New(Config{Name: name, Path: path, StateRoot: s.stateRoot,
		RuntimeRoot: filepath.Join(s.runtimeRoot, name), Cgroups: s.cg, Logger: s.log})
}

// Named returns the OCI-CLI runtime called name, nil for the native
// executor ("" or Native). A name not configured, or a runtime that could
// not be made, is an error.
func (s *Runtimes) Named(name string) (*Runtime, error) {
	if name == "" || name == Native {
		return nil, nil
	}
	r, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("runtime %q is not configured on this daemon (start it with --runtime %s=PATH)", name, name)
	}
	if r.err != nil {
		return nil, fmt.Errorf("runtime %q: %w", name, r.err)
	}
	return r.rt, nil
}

// ForSpec returns the runtime that is to create a container of spec: the
// one its AnnotationRuntime names, nil for the native executor.
func (s *Runtimes) ForSpec(spec *specs.Spec) (*Runtime, error) {
	return s.Named(spec.Annotations[AnnotationRuntime])
}

// Of returns the OCI-CLI runtime that created container id, as its state
// says (nil for a native container, or one with no readable state).
func (s *Runtimes) Of(id string) (*Runtime, error) {
	if name, ok := s.names.Load(id); ok {
		return s.Named(name.(string))
	}
	st, err := executor.ReadState(s.stateRoot, id)
	if err != nil {
		return nil, nil
	}
	s.names.Store(id, NameOf(st))
	return s.Named(NameOf(st))
}

// Remember records that container id was just created by the runtime
// called name ("" or Native: the native executor), for Of.
func (s *Runtimes) Remember(id, name string) {
	if name == Native {
		name = ""
	}
	s.names.Store(id, name)
}

// Forget drops what Of remembers of container id: it is being deleted or
// created again.
func (s *Runtimes) Forget(id string) {
	s.names.Delete(id)
}

// WithoutBinary returns a runtime called name that has no binary, to
// delete a container whose runtime is no longer configured or cannot be
// used: Delete kills its processes and removes its cgroup and state
// without the binary.
func (s *Runtimes) WithoutBinary(name string) (*Runtime, error) {
	return s.make(name, "/nonexistent/"+name)
}

// NameOf is the name of the OCI-CLI runtime that created the container of
// st, "" when the native executor did.
func NameOf(st *executor.State) string {
	return st.Annotations[AnnotationRuntime]
}
