package main

import (
	"strings"
	"testing"
)

// TestValidateAfterCycle: a cycle in spec.after across files is rejected
// by validate, naming every file and line of it.
func TestValidateAfterCycle(t *testing.T) {
	dir := t.TempDir()
	m := func(name, after string) string {
		return strings.Replace(goodManifest, "NAME", name, 1) + "  health: {tcp: {port: 5432}}\n  after: [{name: " + after + ", condition: healthy}]\n"
	}
	writeManifest(t, dir, "db.yaml", m("db", "web"))
	writeManifest(t, dir, "web.yaml", m("web", "db"))
	code, out, errOut := validate(t, "--insecure-manifests", dir)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	want := []string{
		dir + "/db.yaml:8: spec.after[0].name: the start order has a cycle: db (" + dir + "/db.yaml:3) -> web (" + dir + "/web.yaml:3) -> db; remove one of these from spec.after",
		dir + "/web.yaml:8: spec.after[0].name: the start order has a cycle: web (" + dir + "/web.yaml:3) -> db (" + dir + "/db.yaml:3) -> web; remove one of these from spec.after",
	}
	if got := strings.TrimSpace(out); got != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	if errOut != "2 files, 0 containers, 2 errors\n" {
		t.Errorf("summary %q", errOut)
	}
}
