package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildShipped builds main package pkg ("./cmd/reconciled" when empty) to
// out as make build does (packaging/build.sh: static, the container
// stages' binary appended), so that end-to-end tests run what is shipped.
func BuildShipped(ctx context.Context, out, pkg string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.CommandContext(ctx, filepath.Join(root, "packaging", "build.sh"), out)
	cmd.Dir = root
	cmd.Env = os.Environ()
	if pkg != "" {
		cmd.Env = append(cmd.Env, "PKG="+pkg)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("packaging/build.sh %s: %w\n%s", out, err, b)
	}
	return nil
}
