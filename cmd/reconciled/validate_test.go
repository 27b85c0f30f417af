package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"reconciled.dev/reconciled/desired"
)

func validate(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runValidate(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestValidateExamples keeps examples/manifests valid: the README's quick
// start runs them. It runs exactly what people run, without
// --insecure-manifests: as root, a checkout writable by group or others
// fails here as it would fail in the daemon.
func TestValidateExamples(t *testing.T) {
	code, out, errOut := validate(t, "../../examples/manifests")
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, " files, ") || !strings.HasSuffix(errOut, " 0 errors\n") {
		t.Errorf("summary: %q", errOut)
	}
}

func writeManifest(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodManifest = `apiVersion: reconciled.dev/v1
kind: Container
metadata: {name: NAME}
spec:
  root: {path: /}
  command: [/bin/true]
`

func TestValidateErrors(t *testing.T) {
	dir := t.TempDir()
	writeManifest(t, dir, "web.yaml", strings.Replace(goodManifest, "NAME", "web", 1)+"  resources: {memory: 12XB}\n")
	writeManifest(t, dir, "a/db.yml", strings.Replace(goodManifest, "NAME", "db", 1))
	writeManifest(t, dir, "b/db.json", `{"apiVersion": "reconciled.dev/v1", "kind": "Container", "metadata": {"name": "db"},
"spec": {"root": {"path": "/"}, "command": ["/bin/true"]}}`)
	writeManifest(t, dir, "ok.yaml", strings.Replace(goodManifest, "NAME", "ok", 1))
	writeManifest(t, dir, ".hidden.yaml", "garbage: [")
	writeManifest(t, dir, "notes.txt", "garbage: [")

	code, out, errOut := validate(t, "--insecure-manifests", dir)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	want := []string{
		dir + "/a/db.yml:3: metadata.name: \"db\" is also defined in " + dir + "/b/db.json:1; names must be unique in the directory, and neither definition is applied",
		dir + "/b/db.json:1: metadata.name: \"db\" is also defined in " + dir + "/a/db.yml:3; names must be unique in the directory, and neither definition is applied",
		dir + "/web.yaml:7: spec.resources.memory: \"12XB\" is not a quantity (use e.g. 256Mi)",
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if errOut != "4 files, 1 container, 3 errors\n" {
		t.Errorf("summary %q", errOut)
	}

	code, out, _ = validate(t, dir, "-o", "json", "--insecure-manifests")
	if code != 1 {
		t.Errorf("json: exit %d", code)
	}
	var rep struct {
		Valid      bool
		Files      int
		Containers int
		Errors     []desired.Error
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Valid || rep.Files != 4 || rep.Containers != 1 || len(rep.Errors) != 3 || rep.Errors[2].Line != 7 || rep.Errors[2].Field != "spec.resources.memory" {
		t.Errorf("json report: %+v", rep)
	}
}

func TestValidateFilesAndMissing(t *testing.T) {
	dir := t.TempDir()
	p := writeManifest(t, dir, "web.yaml", strings.Replace(goodManifest, "NAME", "web", 1))
	if code, out, errOut := validate(t, "--insecure-manifests", p); code != 0 {
		t.Errorf("exit %d: %s%s", code, out, errOut)
	}
	code, out, _ := validate(t, "--insecure-manifests", filepath.Join(dir, "nope"))
	if code != 1 || !strings.Contains(out, "nope: does not exist") {
		t.Errorf("missing path: exit %d %q", code, out)
	}
	if code, _, _ := validate(t); code != 2 {
		t.Errorf("no args: exit %d", code)
	}
	if code, _, _ := validate(t, "-o", "yaml", p); code != 2 {
		t.Errorf("-o yaml: exit %d", code)
	}
}

func TestValidateNoHostChecks(t *testing.T) {
	dir := t.TempDir()
	writeManifest(t, dir, "web.yaml", strings.Replace(strings.Replace(goodManifest, "NAME", "web", 1), "path: /}", "path: /nonexistent/rootfs}", 1))
	if code, _, _ := validate(t, "--insecure-manifests", dir); code != 1 {
		t.Errorf("exit %d with host checks, want 1", code)
	}
	if code, out, _ := validate(t, "--insecure-manifests", "--no-host-checks", dir); code != 0 {
		t.Errorf("exit %d without host checks: %s", code, out)
	}
}
