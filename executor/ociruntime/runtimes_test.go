package ociruntime_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/executor/ociruntime"
)

// The choice of a container's runtime: native for "" and native, runc
// and crun always, --runtime ones beside (or instead of) them, and an
// error for a name not configured. Manifests name runtimes with desired's
// constants: they must be the same.
func TestRuntimesChoice(t *testing.T) {
	if desired.RuntimeNative != ociruntime.Native || desired.AnnotationRuntime != ociruntime.AnnotationRuntime {
		t.Fatalf("desired's runtime names (%q, %q) and ociruntime's (%q, %q) differ",
			desired.RuntimeNative, desired.AnnotationRuntime, ociruntime.Native, ociruntime.AnnotationRuntime)
	}
	dir := t.TempDir()
	s := ociruntime.NewRuntimes(map[string]string{"mine": "/opt/mine/runtime", "crun": "/opt/crun-v1"},
		filepath.Join(dir, "state"), filepath.Join(dir, "oci"), nil, nil)
	for _, name := range []string{"", ociruntime.Native} {
		if rt, err := s.Named(name); rt != nil || err != nil {
			t.Errorf("Named(%q) = %v, %v; want the native executor (nil, nil)", name, rt, err)
		}
	}
	for _, name := range []string{desired.RuntimeRunc, desired.RuntimeCrun, "mine"} {
		if rt, err := s.Named(name); err != nil || rt == nil || rt.Name() != name {
			t.Errorf("Named(%q) = %v, %v", name, rt, err)
		}
	}
	if _, err := s.Named("other"); err == nil || !strings.Contains(err.Error(), "--runtime other=PATH") {
		t.Errorf("Named(other) = %v; want not configured", err)
	}
	spec := &specs.Spec{Annotations: map[string]string{ociruntime.AnnotationRuntime: "mine"}}
	if rt, err := s.ForSpec(spec); err != nil || rt == nil || rt.Name() != "mine" {
		t.Errorf("ForSpec(mine) = %v, %v", rt, err)
	}
	if rt, err := s.ForSpec(&specs.Spec{}); rt != nil || err != nil {
		t.Errorf("ForSpec(no annotation) = %v, %v; want native", rt, err)
	}
	if rt, err := s.Of("never-created"); rt != nil || err != nil {
		t.Errorf("Of(a container with no state) = %v, %v; want native", rt, err)
	}
	if rt, err := s.WithoutBinary("gone"); err != nil || rt == nil || rt.Name() != "gone" {
		t.Errorf("WithoutBinary(gone) = %v, %v", rt, err)
	}

	// A runtime that cannot be made keeps its error for each container
	// that asks for it (here: its --root inside the state root).
	bad := ociruntime.NewRuntimes(nil, dir, filepath.Join(dir, "oci"), nil, nil)
	if _, err := bad.Named(desired.RuntimeRunc); err == nil || !strings.Contains(err.Error(), `runtime "runc": `) {
		t.Errorf("Named(runc) with an unusable root = %v; want its error", err)
	}
}

// Of reads a container's runtime from its state once: what it found, or
// what Remember says at a create, holds until Forget (a delete).
func TestRuntimesOfRemembers(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "state")
	s := ociruntime.NewRuntimes(nil, root, filepath.Join(dir, "oci"), nil, nil)
	writeState := func(id, runtime string) {
		t.Helper()
		st := executor.State{OCIVersion: specs.Version, ID: id, Status: executor.StatusCreated,
			Annotations: map[string]string{ociruntime.AnnotationRuntime: runtime}}
		data, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(executor.StateDir(root, id), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(executor.StatePath(root, id), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	name := func(id string) string {
		t.Helper()
		rt, err := s.Of(id)
		if err != nil {
			t.Fatalf("Of(%s): %v", id, err)
		}
		if rt == nil {
			return ociruntime.Native
		}
		return rt.Name()
	}

	writeState("a", desired.RuntimeCrun)
	if got := name("a"); got != desired.RuntimeCrun {
		t.Fatalf("Of(a) = %s, want crun (its state's)", got)
	}
	// Remembered: the state is not read again while the container exists.
	writeState("a", desired.RuntimeRunc)
	if got := name("a"); got != desired.RuntimeCrun {
		t.Errorf("Of(a) after its state changed = %s, want crun (remembered)", got)
	}
	s.Forget("a")
	if got := name("a"); got != desired.RuntimeRunc {
		t.Errorf("Of(a) after Forget = %s, want runc (its state's)", got)
	}
	// A create says which runtime made the container; native is "".
	s.Remember("b", desired.RuntimeRunc)
	if got := name("b"); got != desired.RuntimeRunc {
		t.Errorf("Of(b) after Remember(runc) = %s", got)
	}
	s.Remember("b", ociruntime.Native)
	if got := name("b"); got != ociruntime.Native {
		t.Errorf("Of(b) after Remember(native) = %s", got)
	}
	// No state: native, and nothing remembered.
	s.Forget("c")
	if got := name("c"); got != ociruntime.Native {
		t.Errorf("Of(c) with no state = %s", got)
	}
	writeState("c", desired.RuntimeCrun)
	if got := name("c"); got != desired.RuntimeCrun {
		t.Errorf("Of(c) once its state is written = %s, want crun", got)
	}
}
