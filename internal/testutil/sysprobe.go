package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	probeOnce sync.Once
	probeData []byte
	probeErr  error
)

// InstallSysProbe builds the sysprobe command (internal/testutil/sysprobe:
// makes system calls by name and prints their errno) static, once per
// test binary, and copies it to rootfs/sysprobe. RECONCILED_SYSPROBE
// names a prebuilt one instead (a host without Go: CGO_ENABLED=0 go build
// ./internal/testutil/sysprobe).
func InstallSysProbe(t testing.TB, rootfs string) {
	t.Helper()
	probeOnce.Do(func() {
		if prebuilt := os.Getenv("RECONCILED_SYSPROBE"); prebuilt != "" {
			probeData, probeErr = os.ReadFile(prebuilt)
			return
		}
		dir, err := os.MkdirTemp("", "sysprobe-")
		if err != nil {
			probeErr = err
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "sysprobe")
		build := exec.Command("go", "build", "-o", bin, "reconciled.dev/reconciled/internal/testutil/sysprobe")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			probeErr = fmt.Errorf("go build sysprobe: %v\n%s", err, out)
			return
		}
		probeData, probeErr = os.ReadFile(bin)
	})
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "sysprobe"), probeData, 0o755); err != nil {
		t.Fatal(err)
	}
}
