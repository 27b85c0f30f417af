//go:build amd64

package waiter

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"reconciled.dev/reconciled/internal/testutil"
)

// TestGeneratedCode: the machine code committed in zcode_amd64.go is what
// gen.sh assembles from waiter_amd64.S and reaper_amd64.S now, so that an
// edit of the assembly is never shipped without its bytes (or bytes
// without their source).
func TestGeneratedCode(t *testing.T) {
	testutil.RequireBinary(t, "as")
	testutil.RequireBinary(t, "objcopy")
	gofmt, err := exec.LookPath("gofmt")
	if err != nil { // not on PATH: the one beside the go command
		root, err := exec.Command("go", "env", "GOROOT").Output()
		if err != nil {
			t.Fatalf("no gofmt on PATH, and go env GOROOT: %v", err)
		}
		gofmt = filepath.Join(strings.TrimSpace(string(root)), "bin", "gofmt")
	}
	out := filepath.Join(t.TempDir(), "zcode_amd64.go")
	cmd := exec.Command("sh", "gen.sh", out)
	cmd.Env = append(os.Environ(), "GOFMT="+gofmt)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("zcode_amd64.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, committed) {
		t.Errorf("zcode_amd64.go is not what gen.sh makes of the assembly sources: run executor/waiter/gen.sh and commit the result\n--- gen.sh\n%s", got)
	}
}
