//go:build linux

package rootfs

import (
	"strings"
	"testing"
)

func TestSetupBasic(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		name := "newapi"
		if legacy {
			name = "legacy"
		}
		t.Run(name, func(t *testing.T) {
			c := newContainer(t)
			c.legacy = legacy
			out := c.run(`cat /proc/self/mountinfo; echo ===; ls -ln /dev; echo ===; pwd; echo ===; echo $$`, 0)
			parts := strings.Split(out, "===\n")
			if len(parts) != 4 {
				t.Fatalf("output:\n%s", out)
			}
			mounts := mountsIn(t, parts[0])
			for _, mp := range []string{"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"} {
				if _, ok := mounts[mp]; !ok {
					t.Errorf("no mount on %s in:\n%s", mp, parts[0])
				}
			}
			if e := mounts["/sys"]; !e.has("ro") {
				t.Errorf("/sys is %s, want ro", e.options)
			}
			if e := mounts["/proc/sys"]; !e.has("ro") || !e.has("nosuid") {
				t.Errorf("/proc/sys is %q, want ro,nosuid", e.options)
			}
			if e := mounts["/proc/keys"]; e.root != "/null" {
				t.Errorf("/proc/keys is not masked with /dev/null: %+v", mounts["/proc/keys"])
			}
			if strings.TrimSpace(parts[2]) != "/" {
				t.Errorf("cwd %q, want /", parts[2])
			}
			if strings.TrimSpace(parts[3]) != "1" {
				t.Errorf("pid %q, want 1", parts[3])
			}
			for _, want := range []string{"null", "zero", "full", "random", "urandom", "tty", "ptmx -> pts/ptmx", "fd -> /proc/self/fd", "stdin -> /proc/self/fd/0"} {
				if !strings.Contains(parts[1], want) {
					t.Errorf("/dev has no %q:\n%s", want, parts[1])
				}
			}
			t.Logf("%s", out)
		})
	}
}
