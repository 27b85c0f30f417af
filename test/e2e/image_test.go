package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"reconciled.dev/reconciled/internal/testutil/registry"
)

// imageManifest is a container running image, with extra spec lines.
func imageManifest(name, image, extra string) string {
	return fmt.Sprintf("apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: %s}\nspec:\n  image: %s\n  restart: always\n  stop: {timeout: 2s}\n%s", name, image, extra)
}

// mounted says whether path is a mount point in this mount namespace.
func mounted(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// daemonLogCount counts the lines of the daemon's log that contain all of
// words.
func (e *env) daemonLogCount(words ...string) int {
	data, _ := os.ReadFile(e.stderr)
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			n++
		}
	}
	return n
}

// A manifest that names an image in a real registry runs it: the image's
// config (Cmd, Env, WorkingDir, named User resolved from its own
// /etc/passwd) applies, status shows the image and digest, the root
// filesystem is an overlay mount that goes with the container, and two
// manifests on one image pull it once.
func TestImageRunsFromRegistry(t *testing.T) {
	e := newEnv(t)
	reg := registry.Start(t)
	img := registry.NewImage(t, v1.Config{
		Cmd:        []string{"/bin/sh", "-c", "echo image-says $GREETING; id; pwd; exec sleep 1000"},
		Env:        []string{"PATH=/bin", "GREETING=hello"},
		WorkingDir: "/home/app",
		User:       registry.AppUser,
		Labels:     map[string]string{"org.example.team": "edge"},
	}, registry.BusyboxLayer(t))
	digest := registry.Push(t, reg, "e2e/app:v1", img)
	ref := reg.Ref("e2e/app:v1")

	web, api := e.name("web"), e.name("api")
	e.write("web.yaml", imageManifest(web, ref, ""))
	e.write("api.yaml", imageManifest(api, ref, "  env: {GREETING: manifest-wins}\n"))
	e.start()
	c := e.waitRunning(web, 60*time.Second)
	e.waitRunning(api, 30*time.Second)
	e.waitLogs(web, "image-says hello")
	e.waitLogs(web, fmt.Sprintf("uid=%d(app) gid=%d(appgrp)", registry.AppUID, registry.AppGID))
	e.waitLogs(web, "/home/app")
	e.waitLogs(api, "image-says manifest-wins")
	if c.Image != ref || c.ImageDigest != digest {
		t.Errorf("status: image %q digest %q, want %q %q", c.Image, c.ImageDigest, ref, digest)
	}
	if n := e.daemonLogCount("pulling image", "image="+ref); n != 1 {
		t.Errorf("the image was pulled %d times for two containers, want once", n)
	}

	// A new daemon adopts it as it is: same process, same digest.
	oldPid := c.Pid
	c = e.restartDaemon(web, c.Pid)
	if c.Pid != oldPid {
		t.Errorf("after a daemon restart: pid %d, want the adopted %d", c.Pid, oldPid)
	}
	if c.ImageDigest != digest {
		t.Errorf("after a daemon restart: digest %q, want %q", c.ImageDigest, digest)
	}
	if n := e.daemonLogCount("reason=\"recreated"); n != 0 {
		t.Errorf("a daemon restart recreated %d containers", n)
	}

	// The root is an overlay of the stored layers, read-only by default.
	root := filepath.Join(e.state, "rootfs", web)
	if !mounted(t, root) {
		t.Fatalf("%s is not a mount point", root)
	}
	out, err := exec.Command(bin, "exec", "--state", e.state, web, "--", "/bin/sh", "-c", "touch /x 2>&1; echo $?").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Read-only file system") {
		t.Errorf("writing to a read-only image root: %v %q", err, out)
	}

	// image ls shows it in use; image rm refuses; inspect prints the config.
	out, err = exec.Command(bin, "image", "ls", "--image-root", e.images, "--state", e.state, "-o", "json").Output()
	if err != nil {
		t.Fatalf("image ls: %v", err)
	}
	var ls []struct {
		Reference string   `json:"reference"`
		Digest    string   `json:"digest"`
		Size      int64    `json:"size"`
		UsedBy    []string `json:"usedBy"`
	}
	if err := json.Unmarshal(out, &ls); err != nil || len(ls) != 1 {
		t.Fatalf("image ls -o json: %v %s", err, out)
	}
	if ls[0].Reference != ref || ls[0].Digest != digest || ls[0].Size <= 0 || strings.Join(ls[0].UsedBy, ",") != api+","+web {
		t.Errorf("image ls: %+v", ls[0])
	}
	if out, err := exec.Command(bin, "image", "rm", "--image-root", e.images, "--state", e.state, ref).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "in use by "+api+", "+web) {
		t.Errorf("image rm of an image in use: %v %s", err, out)
	}
	out, err = exec.Command(bin, "image", "inspect", "--image-root", e.images, ref).Output()
	if err != nil || !strings.Contains(string(out), `"org.example.team": "edge"`) {
		t.Errorf("image inspect: %v %s", err, out)
	}

	// Removing the manifests removes the containers and their mounts.
	e.deleteGone("web.yaml", web, c.Pid)
	if mounted(t, root) {
		t.Errorf("%s still mounted after its container was removed", root)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("mount point %s left: %v", root, err)
	}
	a := e.statusOf(api)
	e.deleteGone("api.yaml", api, a.Pid)
	if out, err := exec.Command(bin, "image", "rm", "--image-root", e.images, "--state", e.state, ref).CombinedOutput(); err != nil {
		t.Errorf("image rm once unused: %v %s", err, out)
	}
	if left, _ := filepath.Glob(filepath.Join(e.images, "layers", "sha256", "*")); len(left) != 0 {
		t.Errorf("layers left after image rm: %v", left)
	}
}

// A writable image root gets a private upper layer under the state
// directory, removed with the container.
func TestImageWritableRoot(t *testing.T) {
	e := newEnv(t)
	reg := registry.Start(t)
	registry.Push(t, reg, "e2e/rw:1", registry.BusyboxImage(t))
	name := e.name("rw")
	e.write("rw.yaml", imageManifest(name, reg.Ref("e2e/rw:1"),
		"  root: {readonly: false}\n  command: [/bin/sh, -c, 'echo written > /etc/marker && cat /etc/marker && exec sleep 1000']\n"))
	e.start()
	c := e.waitRunning(name, 60*time.Second)
	e.waitLogs(name, "written")
	upper := filepath.Join(e.state, "rw", name, "upper", "etc", "marker")
	if data, err := os.ReadFile(upper); err != nil || string(data) != "written\n" {
		t.Errorf("the write is not in the container's upper layer %s: %q %v", upper, data, err)
	}
	// The stored layer is untouched.
	layers, _ := filepath.Glob(filepath.Join(e.images, "layers", "sha256", "*", "etc", "marker"))
	if len(layers) != 0 {
		t.Errorf("a container wrote into the shared layer: %v", layers)
	}
	e.deleteGone("rw.yaml", name, c.Pid)
	if _, err := os.Stat(filepath.Join(e.state, "rw", name)); !os.IsNotExist(err) {
		t.Errorf("writable layer left after removal: %v", err)
	}
}

// An edit to an image that does not exist leaves the old container
// running, with the error in its status; Never says the image is missing.
func TestImageMissingKeepsOldContainer(t *testing.T) {
	e := newEnv(t)
	reg := registry.Start(t)
	registry.Push(t, reg, "e2e/keep:1", registry.BusyboxImage(t))
	name, never := e.name("keep"), e.name("never")
	e.write("keep.yaml", imageManifest(name, reg.Ref("e2e/keep:1"), "  command: [/bin/sleep, '1000']\n"))
	e.write("never.yaml", imageManifest(never, reg.Ref("e2e/absent:1"), "  imagePullPolicy: Never\n"))
	e.start()
	c := e.waitRunning(name, 60*time.Second)
	e.waitFor(never+" says its image is missing", 20*time.Second, func(r *report) bool {
		n := r.Get(never)
		return n != nil && n.Phase == "backoff" && strings.Contains(n.Message, "is not in the store and imagePullPolicy is Never")
	})

	e.write("keep.yaml", imageManifest(name, reg.Ref("e2e/keep:does-not-exist"), "  command: [/bin/sleep, '1000']\n"))
	r := e.waitFor(name+" reports the failed pull", 30*time.Second, func(r *report) bool {
		k := r.Get(name)
		return k != nil && strings.Contains(k.Message, "failed to pull "+reg.Ref("e2e/keep:does-not-exist"))
	})
	k := r.Get(name)
	if k.Phase != "running" || k.Pid != c.Pid || !alive(c.Pid) {
		t.Errorf("the old container must keep running: phase %s pid %d (was %d)", k.Phase, k.Pid, c.Pid)
	}
	if k.ImageDigest != c.ImageDigest {
		t.Errorf("status shows digest %q, the container runs %q", k.ImageDigest, c.ImageDigest)
	}
}

// A tag pushed again and pulled with `reconciled image pull` recreates
// the containers that run it with imagePullPolicy Always, with the reason.
func TestImageAlwaysFollowsTag(t *testing.T) {
	e := newEnv(t)
	reg := registry.Start(t)
	v1img := registry.NewImage(t, v1.Config{Cmd: []string{"/bin/sh", "-c", "echo version-1; exec sleep 1000"}}, registry.BusyboxLayer(t))
	v2img := registry.NewImage(t, v1.Config{Cmd: []string{"/bin/sh", "-c", "echo version-2; exec sleep 1000"}}, registry.BusyboxLayer(t))
	registry.Push(t, reg, "e2e/tag:stable", v1img)
	ref := reg.Ref("e2e/tag:stable")
	name := e.name("tag")
	e.write("tag.yaml", imageManifest(name, ref, "  imagePullPolicy: Always\n"))
	e.start() // the resync (30s) is not what notices the pull: the store's watch is
	c := e.waitRunning(name, 60*time.Second)
	e.waitLogs(name, "version-1")

	d2 := registry.Push(t, reg, "e2e/tag:stable", v2img)
	if out, err := exec.Command(bin, "image", "pull", "--image-root", e.images, ref).CombinedOutput(); err != nil {
		t.Fatalf("image pull: %v %s", err, out)
	}
	e.waitFor(name+" recreated on the new digest", 20*time.Second, func(r *report) bool {
		k := r.Get(name)
		return k != nil && k.Phase == "running" && k.ImageDigest == d2 && k.Pid != c.Pid
	})
	e.waitLogs(name, "version-2")
	if n := e.daemonLogCount("recreated: spec.image digest changed"); n == 0 {
		t.Errorf("no 'recreated: spec.image digest changed' in the daemon's log")
	}
}

// An image of 130 layers runs: the overlay's lower directories do not fit
// in one page as absolute paths.
func TestImageManyLayers(t *testing.T) {
	e := newEnv(t)
	reg := registry.Start(t)
	layers := []v1.Layer{registry.BusyboxLayer(t)}
	for i := 1; i < 130; i++ {
		layers = append(layers, registry.FileLayer(t, map[string]string{fmt.Sprintf("layers/%03d", i): fmt.Sprint(i)}))
	}
	registry.Push(t, reg, "e2e/many:1", registry.NewImage(t, v1.Config{
		Cmd: []string{"/bin/sh", "-c", "ls /layers | wc -l; cat /layers/129; echo; exec sleep 1000"}}, layers...))
	name := e.name("many")
	e.write("many.yaml", imageManifest(name, reg.Ref("e2e/many:1"), ""))
	e.start()
	c := e.waitRunning(name, 120*time.Second)
	e.waitLogs(name, "129\n129")
	e.deleteGone("many.yaml", name, c.Pid)
}

// throttle is a TCP proxy of our own between the daemon and the
// registry, at about rate bytes/s towards the client.
func throttle(t *testing.T, target string, rate int64) (addr string, sent *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sent = &atomic.Int64{}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() {
				buf := make([]byte, 16<<10)
				for {
					n, err := u.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
						sent.Add(int64(n))
						select {
						case <-done:
							return
						case <-time.After(time.Duration(int64(n) * int64(time.Second) / rate)):
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return l.Addr().String(), sent
}

// A daemon killed with SIGKILL in the middle of a pull leaves nothing
// that reads back as good; the next daemon pulls again and runs it.
func TestImagePullSurvivesDaemonKill(t *testing.T) {
	e := newEnv(t)
	reg := registry.Start(t)
	big := make([]byte, 8<<20)
	if _, err := io.ReadFull(randReader{}, big); err != nil {
		t.Fatal(err)
	}
	registry.Push(t, reg, "e2e/big:1", registry.NewImage(t, v1.Config{Cmd: []string{"/bin/sleep", "1000"}},
		registry.BusyboxLayer(t), registry.TarLayer(t, []registry.Entry{registry.File("big.bin", 0o644, string(big))}, registry.Gzip)))
	addr, sent := throttle(t, reg.Addr, 2<<20)
	ref := addr + "/e2e/big:1"
	name := e.name("big")
	e.write("big.yaml", imageManifest(name, ref, ""))
	e.start()
	e.waitFor(name+" pulling", 30*time.Second, func(r *report) bool {
		c := r.Get(name)
		return c != nil && c.Phase == "pulling"
	})
	deadline := time.Now().Add(30 * time.Second)
	for sent.Load() < 4<<20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if sent.Load() < 4<<20 || sent.Load() >= 9<<20 {
		t.Fatalf("the pull was not half way when the daemon was to be killed: %d bytes", sent.Load())
	}
	e.stop(syscall.SIGKILL)
	out, err := exec.Command(bin, "image", "ls", "--image-root", e.images, "-o", "json").Output()
	if err != nil || strings.TrimSpace(string(out)) != "[]" {
		t.Errorf("a killed pull left a reference: %v %s", err, out)
	}
	e.start()
	e.waitRunning(name, 90*time.Second)
	out, err = exec.Command(bin, "image", "ls", "--image-root", e.images, "--state", e.state, "-o", "json").Output()
	if err != nil || !strings.Contains(string(out), name) {
		t.Errorf("image ls after the second pull: %v %s", err, out)
	}
}

// plan says which images would be pulled, without pulling.
func TestPlanSaysWhichImagesWouldBePulled(t *testing.T) {
	e := newEnv(t)
	name := e.name("planned")
	e.write("p.yaml", imageManifest(name, "127.0.0.1:9/e2e/never-pulled:1", ""))
	out, err := exec.Command(bin, "plan", "--manifests", e.manifests, "--state", e.state, "--image-root", e.images).CombinedOutput()
	if err != nil || !strings.Contains(string(out), name+": nothing now; would pull 127.0.0.1:9/e2e/never-pulled:1") {
		t.Errorf("plan: %v\n%s", err, out)
	}
}

// randReader is an endless source of incompressible bytes (a xorshift).
type randReader struct{}

var randState atomic.Uint64

func (randReader) Read(p []byte) (int, error) {
	x := randState.Add(0x9E3779B97F4A7C15)
	for i := range p {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p[i] = byte(x)
	}
	return len(p), nil
}

// An image container runs under runc too: its root is a mount point
// runc pivots into like any other.
func TestImageWithRunc(t *testing.T) {
	e := newEnv(t)
	if _, err := exec.LookPath("runc"); err != nil {
		t.Fatalf("runc is not installed (apt-get install runc): %v", err)
	}
	reg := registry.Start(t)
	registry.Push(t, reg, "e2e/runc:1", registry.BusyboxImage(t))
	name := e.name("runc")
	e.write("runc.yaml", imageManifest(name, reg.Ref("e2e/runc:1"),
		"  runtime: runc\n  user: \"1234\"\n  command: [/bin/sh, -c, 'id -u; exec sleep 1000']\n"))
	e.start()
	c := e.waitRunning(name, 60*time.Second)
	e.waitLogs(name, "1234")
	if c.Runtime != "runc" {
		t.Errorf("runtime %q, want runc", c.Runtime)
	}
	root := filepath.Join(e.state, "rootfs", name)
	e.deleteGone("runc.yaml", name, c.Pid)
	if mounted(t, root) {
		t.Errorf("%s still mounted after its runc container was removed", root)
	}
}
