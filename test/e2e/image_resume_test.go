package e2e

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"reconciled.dev/reconciled/internal/testutil/registry"
)

// A daemon killed half way through a pull leaves the blob's partial file;
// the next daemon resumes it (a Range request) instead of fetching it all
// again: the registry sends well under 1.6 times the image in all.
func TestImagePullResumesAfterDaemonKill(t *testing.T) {
	e := newEnv(t)
	reg := registry.Start(t)
	big := make([]byte, 16<<20)
	if _, err := io.ReadFull(randReader{}, big); err != nil {
		t.Fatal(err)
	}
	bigLayer := registry.TarLayer(t, []registry.Entry{registry.File("big.bin", 0o644, string(big))}, registry.Gzip)
	img := registry.NewImage(t, v1.Config{Cmd: []string{"/bin/sleep", "1000"}}, registry.BusyboxLayer(t), bigLayer)
	registry.Push(t, reg, "e2e/resume:1", img)
	var total int64
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	total = m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	digest, err := bigLayer.Digest()
	if err != nil {
		t.Fatal(err)
	}
	size, err := bigLayer.Size()
	if err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(e.images, "partial", digest.Hex)

	addr, sent := throttle(t, reg.Addr, 4<<20)
	ref := addr + "/e2e/resume:1"
	name := e.name("resume")
	e.write("resume.yaml", imageManifest(name, ref, ""))
	e.start("--pull-concurrency", "2", "--pull-rate", "64Mi")
	deadline := time.Now().Add(60 * time.Second)
	var have int64
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(partial); err == nil {
			if have = fi.Size(); have >= size/2 {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if have < size/2 || have >= size {
		t.Fatalf("the big layer's partial file was not half way when the daemon was to be killed: %d of %d bytes", have, size)
	}
	e.stop(syscall.SIGKILL)
	first := sent.Load()
	out, err := exec.Command(bin, "image", "ls", "--image-root", e.images, "-o", "json").Output()
	if err != nil || strings.TrimSpace(string(out)) != "[]" {
		t.Errorf("a killed pull left a reference: %v %s", err, out)
	}
	if fi, err := os.Stat(partial); err != nil || fi.Size() < have {
		t.Fatalf("partial file after the kill: %v, %v", fi, err)
	}

	e.start()
	e.waitRunning(name, 90*time.Second)
	ratio := float64(sent.Load()) / float64(total)
	t.Logf("image %d bytes (big layer %d); the registry sent %d bytes before the kill, %d in all (%.3fx)",
		total, size, first, sent.Load(), ratio)
	if ratio >= 1.6 {
		t.Errorf("the registry sent %.2fx the image: the second daemon did not resume", ratio)
	}
	if _, err := os.Stat(partial); err == nil {
		t.Errorf("partial file %s left after the pull", partial)
	}
}
