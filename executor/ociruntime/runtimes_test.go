package ociruntime_test

import (
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/desired"
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
