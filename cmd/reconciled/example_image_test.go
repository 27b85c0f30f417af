package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"reconciled.dev/reconciled/image"
	"reconciled.dev/reconciled/internal/testutil"
)

// busyboxImageScript builds the README's offline example image.
const busyboxImageScript = "../../examples/images/busybox-image.sh"

// TestExampleBusyboxImage runs examples/images/busybox-image.sh and imports
// what it writes with `reconciled image import`, as the README does: the
// layout is accepted (every digest and diff ID checks out), the image has
// /bin/busybox and runs /bin/sh, and the script gives the same digest twice.
func TestExampleBusyboxImage(t *testing.T) {
	testutil.RequireRoot(t) // unpacking chowns
	if _, err := os.Stat(testutil.BusyboxPath); err != nil {
		testutil.SkipOrFail(t, "busybox-static is not installed (%v); apt-get install busybox-static", err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		testutil.SkipOrFail(t, "bash is not installed: %v", err)
	}
	build := func(out string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bash, busyboxImageScript, out)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\n%s", busyboxImageScript, out, err, stderr.String())
		}
		return strings.TrimSpace(stdout.String())
	}
	layoutDir := filepath.Join(t.TempDir(), "busybox")
	digest := build(layoutDir)
	if again := build(filepath.Join(t.TempDir(), "busybox")); again != digest {
		t.Errorf("the script is not deterministic: %s, then %s", digest, again)
	}

	root := t.TempDir()
	imageCmd := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := runImage(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("image %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
		}
		return stdout.String()
	}
	const ref = "example.local/busybox:1"
	var imported []importedImage
	out := imageCmd("import", "--image-root", root, "--name", ref, "-o", "json", layoutDir)
	if err := json.Unmarshal([]byte(out), &imported); err != nil {
		t.Fatalf("import -o json: %v\n%s", err, out)
	}
	if len(imported) != 1 || imported[0].Reference != ref || imported[0].Digest != digest || imported[0].Size <= 0 {
		t.Errorf("imported %+v, want %s@%s", imported, ref, digest)
	}
	if out := imageCmd("import", "--image-root", root, "--name", ref, layoutDir); out != ref+"@"+digest+"\n" {
		t.Errorf("import again: %q", out)
	}

	var inspect struct {
		Layers []string        `json:"layers"`
		Config json.RawMessage `json:"config"`
	}
	out = imageCmd("inspect", "--image-root", root, ref)
	if err := json.Unmarshal([]byte(out), &inspect); err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(inspect.Config))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Cmd, []string{"/bin/sh"}) || !slices.Contains(cfg.Config.Env, "PATH=/usr/sbin:/usr/bin:/sbin:/bin") {
		t.Errorf("config %+v", cfg.Config)
	}
	if host := image.HostPlatform(); cfg.OS != host.OS || cfg.Architecture != host.Architecture {
		t.Errorf("platform %s/%s, this host is %s/%s", cfg.OS, cfg.Architecture, host.OS, host.Architecture)
	}
	if len(inspect.Layers) != 1 {
		t.Fatalf("layers %v", inspect.Layers)
	}
	l := inspect.Layers[0]
	if fi, err := os.Lstat(filepath.Join(l, "bin", "busybox")); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 {
		t.Errorf("/bin/busybox: %v, %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(l, "bin", "sh")); err != nil || target != "busybox" {
		t.Errorf("/bin/sh -> %q, %v", target, err)
	}
	if fi, err := os.Lstat(filepath.Join(l, "tmp")); err != nil || fi.Mode()&(os.ModeSticky|os.ModePerm) != os.ModeSticky|0o777 {
		t.Errorf("/tmp: %v, %v", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(l, "etc", "passwd")); err != nil || !strings.Contains(string(b), "nobody:x:65534:65534:") {
		t.Errorf("/etc/passwd: %q, %v", b, err)
	}
}
