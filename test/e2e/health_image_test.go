package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"reconciled.dev/reconciled/internal/testutil/registry"
)

// An image's HEALTHCHECK is the probe of a container without spec.health:
// it is probed (CMD-SHELL through /bin/sh -c, the image's interval and
// retries), a dependent waits for it to be healthy, a daemon restart keeps
// probing it without restarting it, and when it fails the container is
// restarted as with spec.health. spec.health wins over it, and `health:
// none` turns it off.
func TestHealthFromImage(t *testing.T) {
	e := newEnv(t)
	reg := registry.Start(t)
	img := registry.NewImage(t, v1.Config{
		Cmd: []string{"/bin/sh", "-c", "touch /tmp/ok; exec sleep 100000"},
		Env: []string{"PATH=/bin"},
		Healthcheck: &v1.HealthConfig{
			Test:     []string{"CMD-SHELL", "test -e /tmp/ok"},
			Interval: 200 * time.Millisecond,
			Retries:  2,
		},
	}, registry.BusyboxLayer(t))
	registry.Push(t, reg, "e2e/checked:v1", img)
	ref := reg.Ref("e2e/checked:v1")

	app, own, off, web := e.name("app"), e.name("own"), e.name("off"), e.name("web")
	tmp := "  mounts: [{type: tmpfs, target: /tmp}]\n"
	e.write("app.yaml", imageManifest(app, ref, tmp))
	e.write("own.yaml", imageManifest(own, ref, tmp+"  health: {exec: [/bin/false], interval: 200ms, retries: 1, onUnhealthy: none}\n"))
	e.write("off.yaml", imageManifest(off, ref, tmp+"  health: none\n"))
	e.write("web.yaml", manifest(web, "exec sleep 100000", "  after: [{name: "+app+", condition: healthy}]\n"))
	e.start()

	c := e.waitHealth(app, "healthy", 60*time.Second)
	if !strings.Contains(c.HealthOutput, "exec /bin/sh -c test -e /tmp/ok exited with 0") || !c.Ready {
		t.Errorf("the image's probe: output %q, ready %v", c.HealthOutput, c.Ready)
	}
	e.waitRunning(web, 30*time.Second)
	if o := e.waitHealth(own, "unhealthy", 30*time.Second); !strings.Contains(o.HealthOutput, "exec /bin/false exited with 1") {
		t.Errorf("spec.health over the image's: %q", o.HealthOutput)
	}
	if o := e.waitRunning(off, 30*time.Second); o.Health != "none" || !o.Ready {
		t.Errorf("health: none: health %q, ready %v", o.Health, o.Ready)
	}

	// A daemon restart: still probed with the image's check, not restarted.
	pid := c.Pid
	e.restartDaemon(app, pid)
	c = e.waitHealth(app, "healthy", 30*time.Second)
	if c.Pid != pid || c.Restarts != 0 {
		t.Fatalf("after a daemon restart: pid %d (was %d), restarts %d", c.Pid, pid, c.Restarts)
	}

	// The check fails: restarted (onUnhealthy's default), with the events.
	if err := os.Remove(inContainer(pid, "/tmp/ok")); err != nil {
		t.Fatal(err)
	}
	e.waitFor(app+" restarted for its image's health check", 30*time.Second, func(r *report) bool {
		c := r.Get(app)
		return c != nil && c.Restarts == 1 && c.Pid != 0 && c.Pid != pid
	})
	e.waitHealth(app, "healthy", 30*time.Second)
	c = e.statusOf(app) // with its events
	for _, want := range []string{"unhealthy: exec /bin/sh -c test -e /tmp/ok exited with 1 (2 in a row)", "restarted: unhealthy"} {
		if !hasEventWith(c, want) {
			t.Errorf("no event %q in %+v", want, c.Events)
		}
	}
}

// A service that listens on ::1 only is reached by http and tcp probes
// (127.0.0.1 is refused, ::1 is tried), and the failure of a port nobody
// listens on is still worded as 127.0.0.1's refusal.
func TestHealthIPv6Loopback(t *testing.T) {
	e := newEnv(t)
	web, db := e.name("web6"), e.name("db6")
	httpd := "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec busybox httpd -f -p '[::1]:8080' -h /tmp/www"
	e.write("web.yaml", probeManifest(web, httpd, "  health: {http: {port: 8080, path: /index.html}, interval: 200ms, retries: 2}\n"))
	e.write("db.yaml", probeManifest(db, httpd, "  health: {tcp: {port: 8080}, interval: 200ms, retries: 2, onUnhealthy: none}\n"))
	e.start()
	c := e.waitHealth(web, "healthy", 30*time.Second)
	if !strings.Contains(c.HealthOutput, "http GET :8080/index.html returned 200") {
		t.Errorf("http probe over ::1: %q", c.HealthOutput)
	}
	c = e.waitHealth(db, "healthy", 30*time.Second)
	if !strings.Contains(c.HealthOutput, "tcp :8080 connected") {
		t.Errorf("tcp probe over ::1: %q", c.HealthOutput)
	}
}
