package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/daemon"
)

func TestTermSafe(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"web", "web"},
		{"", ""},
		{"/etc/reconciled.d/web.yaml", "/etc/reconciled.d/web.yaml"},
		{"café ☕ 日本", "café ☕ 日本"},   // UTF-8 kept
		{"a b\u00a0c", "a b\u00a0c"}, // spaces kept
		{"a\nb", `a\nb`},             // a forged line
		{"x\x1b[2Jy", `x\x1b[2Jy`},   // a terminal escape
		{"\t\r\a\b\f\v\x00\x7f", `\t\r\a\b\f\v\x00\x7f`},
		{"c1\u0085\u009b", `c1\u0085\u009b`}, // C1 controls (NEL, CSI)
		{"bidi\u202egnp.yaml", `bidi\u202egnp.yaml`},
		{"line\u2028sep", `line\u2028sep`},
		{"bad\xff\xc3utf8", `bad\xff\xc3utf8`},
		{`back\slash`, `back\\slash`}, // an escape in the output is always one
	} {
		if got := termSafe(c.in); got != c.want {
			t.Errorf("termSafe(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// controlBytes returns the C0 controls (but the newline ending each line
// and the tabwriter's spaces), DEL and C1 controls in out.
func controlBytes(out string) []rune {
	var bad []rune
	for _, r := range out {
		if r != '\n' && (r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0) {
			bad = append(bad, r)
		}
	}
	return bad
}

// A manifest file whose name holds a newline and a terminal escape is
// shown escaped in status's text: it can neither clear the operator's
// screen nor forge a line.
func TestStatusEscapesControlCharacters(t *testing.T) {
	dir := t.TempDir()
	evil := "evil\nweb  running  4242\x1b[2J.yaml"
	// Invalid (command is not a list), so that its name is in the errors.
	body := "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /, readonly: true}\n  command: \"/bin/true\x1b]0;owned\x07\"\n"
	if err := os.WriteFile(filepath.Join(dir, evil), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	set, _, err := desired.NewLoader(dir, desired.Options{InsecureManifests: true}, desired.Set{}).Load()
	if err != nil {
		t.Fatal(err)
	}
	errs := set.Errors()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), "\x1b[2J") {
		t.Fatalf("the loader's errors do not name the file: %v", errs)
	}
	path := filepath.Join(dir, evil)
	now := time.Now()
	rep := &daemon.Report{
		Manifests: dir + "/\x1b[31m",
		Revision:  "abc\r\x1b[K",
		Containers: []daemon.ContainerStatus{{
			Name: "web", Phase: "invalid", Source: path, Message: "kept: " + filepath.Base(path) + " is invalid",
			LastError: "exec \"/bin/x\x1b[2J\": not found", Errors: errs, Started: now.Add(-time.Minute),
			Events: []daemon.Event{{Time: now, Action: "kept", Reason: "file\n2025-01-01 00:00:00.000  created  forged"}},
		}},
		Files:   []daemon.FileReport{{Path: path, Errors: errs}},
		Imports: []daemon.ImportReport{{Path: "/import/x\x1b[2J.tar", Error: "bad\nline"}},
	}
	rep.Daemon.Loaded = true

	var out bytes.Buffer
	printReport(&out, rep, now)
	c := rep.Containers[0]
	printContainer(&out, &c, now)
	text := out.String()
	if bad := controlBytes(text); len(bad) > 0 {
		t.Errorf("status text holds control characters %q:\n%s", bad, text)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "web  running") || strings.Contains(line, "  forged") && !strings.Contains(line, `\n`) {
			t.Errorf("a forged line: %q", line)
		}
	}
	for _, want := range []string{`evil\nweb  running  4242\x1b[2J.yaml`, `file\n2025-01-01`, `x\x1b[2J.tar`} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
}
