package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil/registry"
)

// randomFileLayer is a layer of one file of sizeKiB incompressible bytes
// (seeded by name).
func randomFileLayer(t *testing.T, name string, sizeKiB int) v1.Layer {
	t.Helper()
	var seed [32]byte
	copy(seed[:], name)
	buf := make([]byte, sizeKiB<<10)
	rand.NewChaCha8(seed).Read(buf)
	return registry.FileLayer(t, map[string]string{"data/" + name: string(buf)})
}

// imagesOnTmpfs mounts a tmpfs of sizeMiB for the image store and returns
// its root. Call it before newEnv: the tmpfs is unmounted after the env's
// cleanup (the daemon stopped, its containers and their overlays gone).
func imagesOnTmpfs(t *testing.T, sizeMiB int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%dm,mode=0700", sizeMiB)); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return filepath.Join(dir, "images")
}

type storeDF struct {
	Images      int     `json:"images"`
	UsedPercent float64 `json:"usedPercent"`
}

func (e *env) imageDF() storeDF {
	e.t.Helper()
	out, err := exec.Command(bin, "image", "df", "--image-root", e.images, "-o", "json").Output()
	var df storeDF
	if err == nil {
		err = json.Unmarshal(out, &df)
	}
	if err != nil {
		e.t.Fatalf("image df: %v %s", err, out)
	}
	return df
}

func (e *env) imageRefs() []string {
	e.t.Helper()
	out, err := exec.Command(bin, "image", "ls", "--image-root", e.images, "-o", "json").Output()
	var ls []struct {
		Reference string `json:"reference"`
	}
	if err == nil {
		err = json.Unmarshal(out, &ls)
	}
	if err != nil {
		e.t.Fatalf("image ls: %v %s", err, out)
	}
	var refs []string
	for _, l := range ls {
		refs = append(refs, l.Reference)
	}
	return refs
}

// The daemon's image GC, on an image store that fills its file system:
// past the high-water mark it removes the unused images, least recently
// pulled first, down to the low-water mark, never the image a running
// container uses; when only that one is left above the mark, status says
// "disk pressure".
func TestImageGCAtHighWaterMark(t *testing.T) {
	images := imagesOnTmpfs(t, 32)
	e := newEnv(t)
	e.images = images
	reg := registry.Start(t)
	web := e.name("web")
	webImg := registry.NewImage(t, v1.Config{Cmd: []string{"/bin/sleep", "1000"}}, registry.BusyboxLayer(t), randomFileLayer(t, "web", 2048))
	registry.Push(t, reg, "gc/web:1", webImg)
	pull := func(ref string) {
		t.Helper()
		if out, err := exec.Command(bin, "image", "pull", "--image-root", e.images, ref).CombinedOutput(); err != nil {
			t.Fatalf("image pull %s: %v\n%s", ref, err, out)
		}
	}
	pull(reg.Ref("gc/web:1"))
	base := e.imageDF().UsedPercent
	olds := []string{"old1", "old2", "old3"}
	for _, n := range olds {
		registry.Push(t, reg, "gc/"+n+":1", registry.NewImage(t, v1.Config{Cmd: []string{"/bin/true"}}, randomFileLayer(t, n, 2048)))
		pull(reg.Ref("gc/" + n + ":1"))
		time.Sleep(20 * time.Millisecond) // distinct pull times
	}
	full := e.imageDF().UsedPercent
	per := (full - base) / 3
	t.Logf("web alone %.1f %%, with three more %.1f %% (%.1f %% each)", base, full, per)
	if per < 5 {
		t.Fatalf("an image takes %.1f %% of the tmpfs; the test needs more", per)
	}
	time.Sleep(1100 * time.Millisecond) // past --image-min-age

	// The high-water mark just under the use; a low-water mark that
	// takes two of the unused images to reach.
	e.write("web.yaml", imageManifest(web, reg.Ref("gc/web:1"), ""))
	high, low := full-1, full-1.5*per
	e.start("--image-gc-high", fmt.Sprintf("%.2f", high), "--image-gc-low", fmt.Sprintf("%.2f", low), "--image-min-age", "1s")
	c := e.waitRunning(web, 60*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for len(e.imageRefs()) > 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got, want := strings.Join(e.imageRefs(), " "), reg.Ref("gc/old3:1")+" "+reg.Ref("gc/web:1"); got != want {
		t.Errorf("after GC: %s, want %s (old1 and old2, the least recently pulled, removed)", got, want)
	}
	if n := e.daemonLogCount("image removed by garbage collection", "freedBytes="); n != 2 {
		t.Errorf("%d removals logged with the bytes freed, want 2", n)
	}
	if n := e.daemonLogCount("image garbage collection failed"); n != 0 {
		t.Errorf("GC failed %d times", n)
	}
	if df := e.imageDF(); df.UsedPercent > low {
		t.Errorf("after GC: %.1f %% used, want at most %.1f %%", df.UsedPercent, low)
	}
	if r := e.waitFor("a status", 5*time.Second, func(*report) bool { return true }); r.DiskPressure {
		t.Errorf("disk pressure below the mark: %+v", r.ImageDisk)
	}

	// Marks at 1 %: old3 goes, web stays (it runs), and the host is under
	// disk pressure.
	e.stop(syscall.SIGTERM)
	e.start("--image-gc-high", "1", "--image-gc-low", "1", "--image-min-age", "1s")
	r := e.waitFor("disk pressure", 30*time.Second, func(r *report) bool { return r.DiskPressure })
	if r.ImageDisk == nil || r.ImageDisk.HighPercent != 1 || r.ImageDisk.UsedPercent <= 1 {
		t.Errorf("imageDisk %+v", r.ImageDisk)
	}
	// Pressure is reported by the first check; old3 goes at the pass
	// after the manifests are read (a second later at most).
	deadline = time.Now().Add(30 * time.Second)
	for strings.Join(e.imageRefs(), " ") != reg.Ref("gc/web:1") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := strings.Join(e.imageRefs(), " "); got != reg.Ref("gc/web:1") {
		t.Errorf("under pressure: %s, want web's image alone", got)
	}
	out, err := exec.Command(bin, "status", "--state", e.state).Output()
	if err != nil || !strings.Contains(string(out), "disk pressure: "+e.images+" ") || !strings.Contains(string(out), "% used (high-water mark 1 %)") {
		t.Errorf("status text: %v\n%s", err, out)
	}
	if now := e.statusOf(web); now.Pid != c.Pid {
		t.Errorf("web's pid %d, was %d: GC disturbed a running container", now.Pid, c.Pid)
	}
	if _, err := os.Stat(filepath.Join(e.state, "rootfs", web, "bin", "busybox")); err != nil {
		t.Errorf("web's root: %v", err)
	}
}
