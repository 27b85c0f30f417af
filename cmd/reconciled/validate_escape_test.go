package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validate's text names an invalid file escaped: a name holding a newline
// and a terminal escape neither forges a line nor clears the screen.
func TestValidateEscapesControlCharacters(t *testing.T) {
	dir := t.TempDir()
	evil := "evil\nweb.yaml: ok\x1b[2J.yaml"
	body := "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /, readonly: true}\n  command: /bin/true\n"
	if err := os.WriteFile(filepath.Join(dir, evil), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := validate(t, "--insecure-manifests", dir)
	if code != 1 || out == "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if bad := controlBytes(out + errOut); len(bad) > 0 {
		t.Errorf("validate's text holds control characters %q:\n%s", bad, out)
	}
	if !strings.Contains(out, `evil\nweb.yaml: ok\x1b[2J.yaml`) {
		t.Errorf("the file name is not shown escaped:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "web.yaml: ok") {
			t.Errorf("a forged line: %q", line)
		}
	}
}
