package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"reconciled.dev/reconciled/internal/daemon"
	unit "reconciled.dev/reconciled/packaging/systemd"
)

// install into a staging root puts the binary, the unit (naming the
// binary's installed path) and an empty manifests directory, and a second
// install keeps what the directory holds.
func TestInstallIntoRoot(t *testing.T) {
	root := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	args := []string{"--root", root, "--prefix", "/opt/rc", "--unit-dir", "/lib/systemd/system"}
	if code := runInstall(t.Context(), args, &out, &errb); code != 0 {
		t.Fatalf("install exit %d: %s", code, errb.String())
	}
	bin := filepath.Join(root, "opt/rc/bin/reconciled")
	fi, err := os.Stat(bin)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("binary %s: %v, %v", bin, fi, err)
	}
	want, _ := os.ReadFile(self)
	if got, _ := os.ReadFile(bin); !bytes.Equal(got, want) {
		t.Errorf("%s is not a copy of the running binary", bin)
	}
	text, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/reconciled.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"ExecStart=/opt/rc/bin/reconciled run ", "Type=notify", "KillMode=process", "Restart=always", "WatchdogSec="} {
		if !strings.Contains(string(text), "\n"+line) {
			t.Errorf("installed unit lacks a line %q:\n%s", line, text)
		}
	}
	man := filepath.Join(root, "etc/reconciled.d")
	if fi, err := os.Stat(man); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("manifests directory %s: %v, %v", man, fi, err)
	}
	if entries, _ := os.ReadDir(man); len(entries) != 0 {
		t.Errorf("manifests directory not empty: %v", entries)
	}
	// Again, with a manifest in place: the directory is kept as it is.
	if err := os.WriteFile(filepath.Join(man, "web.yaml"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := runInstall(t.Context(), args, &out, &errb); code != 0 {
		t.Fatalf("second install exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(man, "web.yaml")); err != nil {
		t.Errorf("second install lost the manifest: %v", err)
	}
	if strings.Contains(out.String(), man) {
		t.Errorf("second install says it installed %s:\n%s", man, out.String())
	}
}

func TestInstallRejectsRelativePaths(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runInstall(t.Context(), []string{"--root", t.TempDir(), "--prefix", "usr"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), "--prefix") {
		t.Errorf("error does not name the flag: %s", errb.String())
	}
}

// The embedded unit is the shipped file, and the default install writes it
// unchanged.
func TestShippedUnitIsEmbedded(t *testing.T) {
	file, err := os.ReadFile("../../packaging/systemd/reconciled.service")
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != unit.Unit {
		t.Error("packaging/systemd/reconciled.service differs from the embedded unit")
	}
	got, err := renderUnit(unit.DefaultBinary, daemon.DefaultManifests)
	if err != nil || got != string(file) {
		t.Errorf("renderUnit(%s) is not the shipped file (%v)", unit.DefaultBinary, err)
	}
}

// install --manifests DIR writes DIR into the unit's ExecStart (and its
// Description): the installed service watches the directory install made,
// not /etc/reconciled.d. The default leaves the line as shipped.
func TestInstallManifestsInExecStart(t *testing.T) {
	for _, c := range []struct {
		manifests, execStart, description string
	}{
		{"/srv/manifests", "ExecStart=/opt/rc/bin/reconciled run --manifests /srv/manifests --cgroup-driver auto\n",
			"Description=reconciled container daemon (manifests in /srv/manifests)\n"},
		{"/etc/reconciled.d/", "ExecStart=/opt/rc/bin/reconciled run --cgroup-driver auto\n",
			"Description=reconciled container daemon (manifests in /etc/reconciled.d)\n"},
		{"/srv/my manifests/100%", `ExecStart=/opt/rc/bin/reconciled run --manifests "/srv/my manifests/100%%" --cgroup-driver auto` + "\n",
			"Description=reconciled container daemon (manifests in /srv/my manifests/100%%)\n"},
	} {
		root := t.TempDir()
		var out, errb bytes.Buffer
		args := []string{"--root", root, "--prefix", "/opt/rc", "--manifests", c.manifests}
		if code := runInstall(t.Context(), args, &out, &errb); code != 0 {
			t.Fatalf("install --manifests %s: exit %d: %s", c.manifests, code, errb.String())
		}
		text, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/reconciled.service"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(string(text), "\nExecStart=") != 1 || !strings.Contains(string(text), "\n"+c.execStart) {
			t.Errorf("--manifests %s: the unit lacks the line %q:\n%s", c.manifests, c.execStart, text)
		}
		if !strings.Contains(string(text), "\n"+c.description) {
			t.Errorf("--manifests %s: the unit lacks the line %q", c.manifests, c.description)
		}
		if fi, err := os.Stat(filepath.Join(root, c.manifests)); err != nil || !fi.IsDir() {
			t.Errorf("--manifests %s: no directory: %v", c.manifests, err)
		}
	}
	var out, errb bytes.Buffer
	if code := runInstall(t.Context(), []string{"--root", t.TempDir(), "--manifests", "/srv/a\nExecStartPre=/bin/evil"}, &out, &errb); code != 2 {
		t.Errorf("a manifests path with a newline: exit %d, want 2 (%s)", code, errb.String())
	}
}
