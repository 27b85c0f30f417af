package systemdtest

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSandbox starts one sandbox, checks from outside that systemd runs
// contained in it, then re-runs itself inside and checks what a test there
// sees.
func TestSandbox(t *testing.T) {
	if Inside() {
		checkInside(t)
		return
	}
	sb := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	out, err := sb.Exec(ctx, "systemctl", "is-system-running")
	if got := strings.TrimSpace(string(out)); err != nil && got != "degraded" || got != "running" && got != "degraded" {
		t.Errorf("systemctl is-system-running inside = %q, %v; want running", got, err)
	}
	out, err = sb.Exec(ctx, "systemctl", "list-units", "--all", "--no-legend", "--plain", "--type=service")
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("services in the sandbox (want none: no unit but sandbox.target may exist): %q, %v", out, err)
	}
	// Units: the sandbox's directory first (tests install units there),
	// then where systemd keeps runtime drop-ins and transient units, so
	// that a re-exec reads them back.
	out, err = sb.Exec(ctx, "systemctl", "show", "-p", "UnitPath", "--value")
	if got := strings.Fields(string(out)); err != nil || !slices.Equal(got, []string{"/run/systemdtest/units", "/run/systemd/system.control", "/run/systemd/transient"}) {
		t.Errorf("systemctl show -p UnitPath inside = %q, %v; want the sandbox's units, then system.control and transient", out, err)
	}
	// systemd's own cgroups are inside the sandbox's, on the host.
	found := false
	for _, d := range sb.Dirs() {
		if strings.Contains(d, "/sys/fs/cgroup/systemd/") {
			found = true
			b, err := os.ReadFile(filepath.Join(d, "init.scope", "cgroup.procs"))
			if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(sb.PID()) {
				t.Errorf("%s/init.scope/cgroup.procs = %q, %v; want systemd's pid %d", d, b, err, sb.PID())
			}
		}
	}
	if !found {
		t.Errorf("no name=systemd hierarchy among the sandbox's cgroups %v", sb.Dirs())
	}
	// Host-side files of the sandbox's namespaces: a private /tmp.
	var host, inner unix.Stat_t
	if err := unix.Stat("/tmp", &host); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join("/proc", strconv.Itoa(sb.PID()), "root", "tmp"), &inner); err != nil {
		t.Fatal(err)
	}
	if host.Dev == inner.Dev {
		t.Errorf("the sandbox's /tmp is the host's (device %d)", host.Dev)
	}
	sb.Run(t)
}

func checkInside(t *testing.T) {
	sb := Current(t)
	if sb.Name == "" {
		t.Fatal("Current: no name")
	}
	comm, err := os.ReadFile("/proc/1/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "systemd" {
		t.Errorf("PID 1 is %q, %v; want systemd", comm, err)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !strings.HasSuffix(line, ":/") {
			t.Errorf("/proc/self/cgroup line %q: want the root of the sandbox's cgroup namespace", line)
		}
	}
	if _, err := os.Stat("/run/systemd/private"); err != nil {
		t.Errorf("systemd's private socket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := sb.Exec(ctx, "systemctl", "show", "-p", "Version", "--value")
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "2") {
		t.Errorf("systemctl show -p Version inside: %q, %v", out, err)
	}
	// The sandbox's /tmp is its own: a file written here is not the host's.
	f, err := os.CreateTemp("", "inside-")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.Remove(f.Name())
}
