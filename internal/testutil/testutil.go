package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RequireRootEnv is the variable .ci/run sets. Under it a test that would
// skip for lack of root, systemd or a tool fails instead, so CI never passes
// by skipping.
const RequireRootEnv = "RECONCILED_REQUIRE_ROOT"

// Required reports whether skips for missing privileges or tools must fail.
func Required() bool { return os.Getenv(RequireRootEnv) == "1" }

// SkipOrFail skips the test, or fails it when RECONCILED_REQUIRE_ROOT=1.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("required by %s=1 but unavailable: "+format, append([]any{RequireRootEnv}, args...)...)
	}
	t.Skipf(format, args...)
}

// RequireRoot skips (or fails under RECONCILED_REQUIRE_ROOT=1) unless the
// test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root")
	}
}

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

var (
	appletsOnce sync.Once
	applets     []string
	appletsErr  error
)

// BusyboxRootfs builds a minimal root filesystem under a fresh t.TempDir():
// the static busybox binary copied to /bin/busybox with a symlink per applet
// in /bin, plus the usual empty directories. It needs busybox-static.
func BusyboxRootfs(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(BusyboxPath); err != nil {
		SkipOrFail(t, "busybox-static is not installed (%v); apt-get install busybox-static", err)
	}
	appletsOnce.Do(func() {
		out, err := exec.Command(BusyboxPath, "--list").Output()
		if err != nil {
			appletsErr = err
			return
		}
		applets = strings.Fields(string(out))
	})
	if appletsErr != nil {
		t.Fatalf("busybox --list: %v", appletsErr)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "etc", "root", "run", "var", "home"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
		"etc/hosts":  "127.0.0.1 localhost\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// Name returns a name derived from the test's name that is usable as a
// container ID, cgroup or unit name: lowercase letters, digits and '-', at
// most max characters. Leftovers on the host can be traced back to the test.
func Name(t testing.TB, max int) string {
	t.Helper()
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > max {
		s = strings.TrimRight(s[:max], "-")
	}
	return s
}

// RequireBinary skips (or fails under RECONCILED_REQUIRE_ROOT=1) unless the
// program name is on PATH.
func RequireBinary(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		SkipOrFail(t, "%s is not installed: %v", name, err)
	}
}
