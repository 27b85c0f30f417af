package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/daemon"
	"reconciled.dev/reconciled/internal/testutil"
	"reconciled.dev/reconciled/internal/testutil/registry"
)

// `image prune` keeps what a manifest names and what a record runs, keeps
// everything just pulled unless --all, and says what it freed; `image ls`
// keeps its JSON list and gets a totals footer in text; `image df` has
// the totals in JSON.
func TestImagePrune(t *testing.T) {
	testutil.RequireRoot(t) // unpacking chowns
	reg := registry.Start(t)
	dir := t.TempDir()
	root, state, manifests := filepath.Join(dir, "images"), filepath.Join(dir, "state"), filepath.Join(dir, "manifests")
	imageCmd := func(wantCode int, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := runImage(context.Background(), args, &stdout, &stderr); code != wantCode {
			t.Fatalf("image %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	digests := map[string]string{}
	for _, n := range []string{"named", "running", "unused"} {
		img := registry.NewImage(t, v1.Config{Cmd: []string{"/bin/true"}}, registry.FileLayer(t, map[string]string{n: strings.Repeat(n, 50000)}))
		digests[n] = registry.Push(t, reg, "prune/"+n+":1", img)
		imageCmd(0, "pull", "--image-root", root, reg.Ref("prune/"+n+":1"))
	}
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	m := fmt.Sprintf("apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  image: %s\n", reg.Ref("prune/named:1"))
	if err := os.WriteFile(filepath.Join(manifests, "web.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	// A container created from "running" whose manifest is gone.
	rec, err := actual.EncodeRecord(actual.Record{Applied: &desired.Container{Name: "db", Image: reg.Ref("prune/running:1"), ImageDigest: digests["running"]}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(daemon.Layout(state).Records(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(daemon.Layout(state).Records(), "db.json"), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--image-root", root, "--state", state, "--manifests", manifests, "--insecure-manifests"}

	// Just pulled: kept without --all.
	out := imageCmd(0, append([]string{"prune"}, flags...)...)
	if !strings.Contains(out, "no unused image to remove") || !regexp.MustCompile(`freed 0 B; filesystem \d+ % used \(.* free\)`).MatchString(out) {
		t.Errorf("prune of images just pulled:\n%s", out)
	}
	// --all: "unused" goes, with its bytes.
	out = imageCmd(0, append([]string{"prune", "--all", "-o", "json"}, flags...)...)
	var res pruneResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("prune -o json: %v\n%s", err, out)
	}
	if len(res.Removed) != 1 || res.Removed[0].Reference != reg.Ref("prune/unused:1") || res.Removed[0].Digest != digests["unused"] ||
		res.Removed[0].FreedBytes < 50000 || res.FreedBytes != res.Removed[0].FreedBytes {
		t.Errorf("prune --all: %+v", res)
	}
	out = imageCmd(0, append([]string{"prune", "--all"}, flags...)...)
	if !strings.Contains(out, "no unused image to remove") {
		t.Errorf("second prune --all:\n%s", out)
	}

	// ls: the JSON list as it was; the totals in the text footer.
	var ls []imageEntry
	if err := json.Unmarshal([]byte(imageCmd(0, "ls", "--image-root", root, "--state", state, "-o", "json")), &ls); err != nil || len(ls) != 2 {
		t.Errorf("ls -o json: %v %+v", err, ls)
	}
	out = imageCmd(0, "ls", "--image-root", root, "--state", state)
	if !regexp.MustCompile(`(?m)^store \d+\.\d [kM]B; filesystem \d+ % used \(\d+\.\d [kMGT]B free\)$`).MatchString(out) {
		t.Errorf("ls footer:\n%s", out)
	}
	var df storeTotals
	if err := json.Unmarshal([]byte(imageCmd(0, "df", "--image-root", root, "-o", "json")), &df); err != nil ||
		df.Images != 2 || df.StoreBytes < 100000 || df.TotalBytes == 0 || df.UsedPercent <= 0 {
		t.Errorf("df -o json: %v %+v", err, df)
	}

	// A manifest directory that cannot be read: nothing is removed.
	out = imageCmd(1, "prune", "--all", "--image-root", root, "--state", state, "--manifests", filepath.Join(dir, "nope"))
	if out != "" {
		t.Errorf("prune without manifests printed %q", out)
	}
	if len(imageCmd(0, "ls", "--image-root", root, "-o", "json")) < 10 {
		t.Error("images gone after a failed prune")
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 123_400_000: "123.4 MB", 12_300_000_000: "12.3 GB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestStatusShowsDiskPressure(t *testing.T) {
	var buf bytes.Buffer
	rep := &daemon.Report{Daemon: daemon.DaemonInfo{Loaded: true}, DiskPressure: true,
		ImageDisk: &daemon.ImageDisk{Path: "/var/lib/reconciled/images", UsedPercent: 91.2, HighPercent: 85, Pressure: true}}
	printReport(&buf, rep, time.Now())
	if !strings.Contains(buf.String(), "disk pressure: /var/lib/reconciled/images 91 % used (high-water mark 85 %)\n") {
		t.Errorf("status text:\n%s", buf.String())
	}
	buf.Reset()
	rep.DiskPressure, rep.ImageDisk.Pressure = false, false
	printReport(&buf, rep, time.Now())
	if strings.Contains(buf.String(), "disk pressure") {
		t.Errorf("status text without pressure:\n%s", buf.String())
	}
}
