package executor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"reconciled.dev/reconciled/internal/testutil"
)

// shipped writes head, then stage and the trailer packaging/build.sh
// writes, to a new file, and returns its path.
func shipped(t *testing.T, head, stage []byte, trailer string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "reconciled")
	data := append(append(append([]byte{}, head...), stage...), trailer...)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func trailerFor(off, n int) string {
	return fmt.Sprintf("%s%016x%016x", stageMagic, off, n)
}

// TestStageImage: the stage binary appended as packaging/build.sh does is
// found, and a damaged trailer is an error naming the fix rather than a
// binary that runs. (The binary built by packaging/build.sh, which maps it
// in place of itself in a stage process, is tested in test/:
// TestShippedStages.)
func TestStageImage(t *testing.T) {
	busybox, err := os.ReadFile(testutil.BusyboxPath)
	if err != nil {
		testutil.SkipOrFail(t, "busybox-static is not installed (%v)", err)
	}
	head := bytes.Repeat([]byte{0x90}, 3*4096) // stands for reconciled itself

	p := shipped(t, head, busybox, trailerFor(len(head), len(busybox)))
	n, err := StageInfo(p)
	if err != nil || n != int64(len(busybox)) {
		t.Fatalf("StageInfo = %d, %v; want %d, nil", n, err, len(busybox))
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, size, ok, err := stageImage(f)
	if err != nil || !ok || off != int64(len(head)) || size != int64(len(busybox)) {
		t.Fatalf("stageImage = %d, %d, %v, %v; want %d, %d, true, nil", off, size, ok, err, len(head), len(busybox))
	}

	// No trailer: not an error, the binary runs its stages itself.
	plain := shipped(t, head, nil, "")
	if _, err := StageInfo(plain); !IsNoStage(err) {
		t.Errorf("StageInfo(no trailer) = %v, want no stage", err)
	}
	unaligned := append(append([]byte{}, head...), 0)
	for name, file := range map[string]string{
		"length past the trailer": shipped(t, head, busybox, trailerFor(len(head), len(busybox)+1)),
		"not an ELF binary there": shipped(t, head, head, trailerFor(len(head), len(head))),
		"offset not page-aligned": shipped(t, unaligned, busybox, trailerFor(len(unaligned), len(busybox))),
		"not hex":                 shipped(t, head, busybox, stageMagic+strings.Repeat("z", 32)),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := StageInfo(file)
			if err == nil || IsNoStage(err) || !strings.Contains(err.Error(), "packaging/build.sh") {
				t.Errorf("StageInfo = %v, want an error that says to rebuild with packaging/build.sh", err)
			}
		})
	}
}
