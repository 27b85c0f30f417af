package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/executor/waiter"
)

// newTestAlloc is a usernsAlloc over a fresh state directory whose
// subuid and subgid files say content.
func newTestAlloc(t *testing.T, subuid, subgid string) (*usernsAlloc, Layout) {
	t.Helper()
	dir := t.TempDir()
	layout := Layout(filepath.Join(dir, "state"))
	if err := os.MkdirAll(layout.Bundles(), 0o700); err != nil {
		t.Fatal(err)
	}
	uf, gf := filepath.Join(dir, "subuid"), filepath.Join(dir, "subgid")
	if err := os.WriteFile(uf, []byte(subuid), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gf, []byte(subgid), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := openUsernsAlloc(layout, uf, gf)
	if err != nil {
		t.Fatal(err)
	}
	return a, layout
}

// Ranges are handed out lowest first from the user's lines only, never
// overlapping, reused by name, given again once freed; a full file or one
// without the user's line is an error that says what to add.
func TestUsernsAllocate(t *testing.T) {
	a, _ := newTestAlloc(t, "other:0:1000000\nreconciled:100000:65536\n# two ranges\nreconciled:300000:131072\n", "reconciled:500000:196608\n")
	got := map[string]idRange{}
	for _, n := range []string{"a", "b", "c"} {
		r, err := a.get(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		got[n] = r
	}
	want := map[string]idRange{
		"a": {UID: 100000, GID: 500000, Size: 65536},
		"b": {UID: 300000, GID: 565536, Size: 65536},
		"c": {UID: 365536, GID: 631072, Size: 65536},
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: %+v, want %+v", n, got[n], w)
		}
	}
	if r, _ := a.get("a"); r != want["a"] {
		t.Errorf("a again: %+v, want its range kept", r)
	}
	if _, err := a.get("d"); err == nil || !strings.Contains(err.Error(), "all taken") {
		t.Errorf("a fourth container: %v, want an error saying the ranges are taken", err)
	}
	if err := a.free("b"); err != nil {
		t.Fatal(err)
	}
	if r, err := a.get("d"); err != nil || r != want["b"] {
		t.Errorf("after b is freed d gets %+v (%v), want b's %+v", r, err, want["b"])
	}

	none, _ := newTestAlloc(t, "someone:100000:65536\n", "")
	if _, err := none.get("a"); err == nil || !strings.Contains(err.Error(), `"reconciled:100000:65536000"`) {
		t.Errorf("no line for reconciled: %v, want an error giving the line to add", err)
	}
}

// userns.json is read as the first release wrote it (testdata), and a
// range is kept only while its container's bundle exists.
func TestUsernsAllocFile(t *testing.T) {
	dir := t.TempDir()
	layout := Layout(dir)
	data, err := os.ReadFile("testdata/userns-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, usernsFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(layout.Bundle("web"), 0o700); err != nil {
		t.Fatal(err)
	}
	a, err := openUsernsAlloc(layout, "/nonexistent", "/nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := a.get("web"); err != nil || r != (idRange{UID: 100000, GID: 200000, Size: 65536}) {
		t.Errorf("web: %+v, %v; want the recorded range without reading the subid files", r, err)
	}
	if err := os.RemoveAll(layout.Bundle("web")); err != nil {
		t.Fatal(err)
	}
	a, err = openUsernsAlloc(layout, "/nonexistent", "/nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.ranges) != 0 {
		t.Errorf("a range without a bundle was kept: %v", a.ranges)
	}
}

// desired accepts exec probes in userns: auto containers exactly where the
// executor can exec into a user namespace.
func TestExecIntoUsernsAgrees(t *testing.T) {
	if desired.ExecIntoUserns != waiter.UsernsJoinerAvailable() {
		t.Fatalf("desired.ExecIntoUserns is %v, executor/waiter.UsernsJoinerAvailable() %v: keep them in step", desired.ExecIntoUserns, waiter.UsernsJoinerAvailable())
	}
}
