package daemon

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/proc"
	"reconciled.dev/reconciled/internal/testutil"
)

// netnsServer starts busybox httpd in a network namespace of its own,
// listening on addr ("8080" or "[::1]:8080") and serving dir, and returns
// a prober of it. The process is killed when the test ends.
func netnsServer(t testing.TB, addr string) *prober {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "busybox")
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/index.html", []byte("ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bb, "sh", "-c", bb+" ip link set lo up && exec "+bb+" httpd -f -p '"+addr+"' -h "+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	start, _, err := proc.StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	return &prober{name: "web", pid: pid, start: start}
}

// waitProbe probes until ok or 5 s passed (the server starts listening a
// moment after it starts).
func waitProbe(t testing.TB, probe func() (bool, string)) string {
	t.Helper()
	var res string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var ok bool
		if ok, res = probe(); ok {
			return res
		}
	}
	t.Fatalf("probe never passed: %s", res)
	return ""
}

// http and tcp probes in a real network namespace, over 127.0.0.1 and ::1,
// and what a refused port says; the daemon's threads stay in its own
// namespace.
func TestProbeInNetns(t *testing.T) {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"8080", "[::1]:8080"} {
		t.Run(addr, func(t *testing.T) {
			p := netnsServer(t, addr)
			defer p.closeRun()
			ctx := context.Background()
			res := waitProbe(t, func() (bool, string) {
				return probeHTTP(ctx, p, &desired.HTTPProbe{Port: 8080, Path: "/index.html"})
			})
			if res != "returned 200" {
				t.Errorf("http: %q", res)
			}
			if ok, res := probeHTTP(ctx, p, &desired.HTTPProbe{Port: 8080, Path: "/missing"}); ok || res != "returned 404" {
				t.Errorf("http of a missing page: %v %q", ok, res)
			}
			if ok, res := probeTCP(ctx, p, 8080); !ok || res != "connected" {
				t.Errorf("tcp: %v %q", ok, res)
			}
			if ok, res := probeTCP(ctx, p, 8081); ok || res != "failed: connection refused" {
				t.Errorf("tcp to a closed port: %v %q", ok, res)
			}
		})
	}
	// Every thread of the test process is in its own namespace still.
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		if ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net"); err == nil && ns != self {
			t.Errorf("thread %s is in %s, not the daemon's %s", task.Name(), ns, self)
		}
	}
}

// A probe of a container whose init is gone fails and says so.
func TestProbeInitGone(t *testing.T) {
	p := netnsServer(t, "8080")
	defer p.closeRun()
	p.start++ // another process with that PID
	if ok, res := probeTCP(context.Background(), p, 8080); ok || !strings.Contains(res, "the container's init is gone") {
		t.Errorf("probe of a gone init: %v %q", ok, res)
	}
}

// The daemon's CPU per probe (issue 17's goal: under 0.2 ms for http and
// tcp); bench/probe.sh measures it with 100 real containers.
func BenchmarkProbeTCP(b *testing.B) {
	p := netnsServer(b, "8080")
	defer p.closeRun()
	ctx := context.Background()
	waitProbe(b, func() (bool, string) { return probeTCP(ctx, p, 8080) })
	cpu := cpuTime(b)
	for b.Loop() {
		if ok, res := probeTCP(ctx, p, 8080); !ok {
			b.Fatal(res)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
}

// cpuTime is this process's CPU time, user and system, all threads.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkProbeHTTP(b *testing.B) {
	p := netnsServer(b, "8080")
	defer p.closeRun()
	ctx := context.Background()
	hp := &desired.HTTPProbe{Port: 8080, Path: "/index.html"}
	waitProbe(b, func() (bool, string) { return probeHTTP(ctx, p, hp) })
	cpu := cpuTime(b)
	for b.Loop() {
		if ok, res := probeHTTP(ctx, p, hp); !ok {
			b.Fatal(res)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
}
