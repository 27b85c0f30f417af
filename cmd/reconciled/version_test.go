package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"reconciled.dev/reconciled/internal/testutil"
)

func TestVersionText(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	const rev = "42b0e86c0ad1f3e0c1bd7f8d2a5a30b9e9e8c7d1"
	for _, c := range []struct {
		name   string
		linked string
		bi     *debug.BuildInfo
		want   string // the first two lines
	}{
		{"no build info", "", nil, "reconciled devel\ngit revision unknown\n"},
		{"go test", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "reconciled devel\ngit revision unknown\n"},
		{"clean checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs", "git", "vcs.revision", rev, "vcs.modified", "false")},
			"reconciled devel\ngit revision " + rev + "\n"},
		{"modified checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20250101000000-42b0e86c0ad1+dirty"}, Settings: settings("vcs.revision", rev, "vcs.modified", "true")},
			"reconciled v0.0.0-20250101000000-42b0e86c0ad1+dirty\ngit revision " + rev + " (modified)\n"},
		{"linked version", "1.4.0", &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}, Settings: settings("vcs.revision", rev)},
			"reconciled 1.4.0\ngit revision " + rev + "\n"},
	} {
		got := versionText(c.linked, c.bi)
		if !strings.HasPrefix(got, c.want) || strings.Count(got, "\n") != 3 {
			t.Errorf("%s: %q, want %q and a go line", c.name, got, c.want)
		}
	}
}

func runDispatch(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := dispatch(args, &out, &errb)
	return code, out.String(), errb.String()
}

// `reconciled version` and `reconciled --version` print the version and
// the revision, exit 0.
func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, out, errOut := runDispatch(args...)
		if code != 0 || !strings.HasPrefix(out, "reconciled ") || !strings.Contains(out, "\ngit revision ") || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if code, _, _ := runDispatch("version", "extra"); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}

// Asked for, help goes to stdout with exit 0; without a command, or with
// an unknown one, usage goes to stderr with exit 2.
func TestHelpExitCodes(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		code, out, errOut := runDispatch(args...)
		if code != 0 || !strings.HasPrefix(out, "usage: reconciled COMMAND") || !strings.Contains(out, "\n  version ") || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	code, out, errOut := runDispatch("help", "status")
	if code != 0 || !strings.HasPrefix(out, "usage: reconciled status") || errOut != "" {
		t.Errorf("help status: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, args := range [][]string{{}, {"no-such-command"}, {"help", "no-such-command"}} {
		code, out, errOut := runDispatch(args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "usage: reconciled COMMAND") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

// A binary built by `make build` in the git checkout says the checkout's
// revision, also where GOFLAGS has -buildvcs=false (as on this project's
// machines), and the version make was given.
func TestVersionOfBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testutil.RequireBinary(t, "make")
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout (or no git): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "reconciled")
	build := exec.Command("make", "-C", "../..", "build", "BIN="+bin, "VERSION=1.4.0-test")
	build.Env = append(build.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	for _, want := range []string{"reconciled 1.4.0-test\n", "\ngit revision " + strings.TrimSpace(string(head))} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--version printed %q, want %q", out, want)
		}
	}
}
