package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runRuncArgs(name string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := runRunc(context.Background(), name, args, &out, &errb)
	return code, out.String(), errb.String()
}

// runc's help, as its tests and users read it: `-h`, `--help` and `help`
// print NAME: and "PROG - Open Container Initiative runtime" on stdout,
// exit 0, and list every subcommand.
func TestRuncHelp(t *testing.T) {
	for _, name := range []string{runcName, "runtime"} {
		prog := map[string]string{runcName: runcName, "runtime": "reconciled runtime"}[name]
		for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"--root", "/nonexistent", "-h"}} {
			code, out, errOut := runRuncArgs(name, args...)
			lines := strings.Split(out, "\n")
			if code != 0 || errOut != "" || len(lines) < 2 || lines[0] != "NAME:" ||
				lines[1] != "   "+prog+" - Open Container Initiative runtime" {
				t.Fatalf("%s %v: exit %d, stdout %q, stderr %q", name, args, code, out, errOut)
			}
			for _, c := range runcCommands {
				if !strings.Contains(out, "\n   "+c.name+" ") {
					t.Errorf("%s %v: %s is not listed:\n%s", name, args, c.name, out)
				}
			}
			if !strings.Contains(out, "GLOBAL OPTIONS:\n") || !strings.Contains(out, "-systemd-cgroup") {
				t.Errorf("%s %v: no global options:\n%s", name, args, out)
			}
		}
	}
	// Through the top-level command as well.
	code, out, _ := runDispatch("runtime", "--help")
	if code != 0 || !strings.HasPrefix(out, "NAME:\n   reconciled runtime - ") {
		t.Errorf("reconciled runtime --help: exit %d, stdout %q", code, out)
	}
	// A wrong global flag is an error: the usage on stderr, exit 2.
	code, out, errOut := runRuncArgs(runcName, "--no-such-flag")
	if code != 2 || out != "" || !strings.Contains(errOut, "flag provided but not defined: -no-such-flag") {
		t.Errorf("--no-such-flag: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// `PROG CMD -h` and `PROG help CMD`: NAME: and "PROG CMD - what it does"
// on stdout, the command's own flags under OPTIONS:, exit 0, for every
// command; nothing is created on the way.
func TestRuncCommandHelp(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	flagOf := map[string]string{
		"create": "-console-socket", "run": "-detach", "delete": "-force", "exec": "-process",
		"kill": "-all", "list": "-quiet", "ps": "-format", "spec": "-rootless",
		"update": "-pids-limit", "events": "-interval",
	}
	for _, c := range runcCommands {
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
			code, out, errOut := runRuncArgs(runcName, append([]string{"--root", root}, args...)...)
			lines := strings.Split(out, "\n")
			if code != 0 || errOut != "" || len(lines) < 5 || lines[0] != "NAME:" ||
				!strings.HasPrefix(lines[1], "   "+runcName+" "+c.name+" - ") ||
				!strings.HasPrefix(lines[4], "   "+runcName+" "+c.name) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
				continue
			}
			if f := flagOf[c.name]; f != "" && (!strings.Contains(out, "\nOPTIONS:\n") || !regexp.MustCompile(`\n  `+f+`[ \n]`).MatchString(out)) {
				t.Errorf("%v: no option %s:\n%s", args, f, out)
			}
		}
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("help created the root %s (stat: %v)", root, err)
	}
	for _, args := range [][]string{{"foo", "-h"}, {"help", "foo"}} {
		code, out, errOut := runRuncArgs(runcName, args...)
		if code == 0 || out != "" || !strings.Contains(errOut, "No help topic for 'foo'") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	// checkpoint and restore are listed, and refused when asked for.
	code, _, errOut := runRuncArgs(runcName, "--root", root, "checkpoint", "c1")
	if code != 1 || !strings.Contains(errOut, "CRIU") {
		t.Errorf("checkpoint: exit %d, stderr %q", code, errOut)
	}
}

// checkpoint checks --parent-path as runc does before anything else, then
// refuses: no CRIU.
func TestRuncCheckpointRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "parent"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"checkpoint", "--parent-path", "/abs", "c1"}, "--parent-path must be relative"},
		{[]string{"checkpoint", "--image-path", dir, "--parent-path", "missing", "c1"}, "invalid --parent-path"},
		{[]string{"checkpoint", "--image-path", dir, "--parent-path", "parent", "c1"}, "need CRIU"},
		{[]string{"restore", "--image-path", dir, "--bundle", dir, "c1"}, "need CRIU"},
	} {
		code, out, errOut := runRuncArgs(runcName, append([]string{"--root", filepath.Join(dir, "root")}, c.args...)...)
		if code != 1 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 1 and %q", c.args, code, out, errOut, c.want)
		}
	}
}
