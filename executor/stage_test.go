package executor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

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
// found, copied into a sealed memfd that runs it, and a damaged trailer is
// an error naming the fix rather than a binary that is exec'd.
func TestStageImage(t *testing.T) {
	busybox, err := os.ReadFile(testutil.BusyboxPath)
	if err != nil {
		testutil.SkipOrFail(t, "busybox-static is not installed (%v)", err)
	}
	head := bytes.Repeat([]byte{0x90}, 12345) // stands for reconciled itself

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
	if err != nil || !ok {
		t.Fatalf("stageImage: ok %v, err %v", ok, err)
	}
	fd, err := stageMemfd(f, off, size)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	mem := os.NewFile(uintptr(fd), "stage")
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Size != int64(len(busybox)) {
		t.Fatalf("memfd size %d (%v), want %d", st.Size, err, len(busybox))
	}
	// Sealed: not writable, through the descriptor or reopened.
	if _, err := unix.Pwrite(fd, []byte("x"), 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("write into the stage memfd: %v, want EPERM", err)
	}
	// As a container would try it through /proc/PID/exe (CVE-2019-5736).
	if w, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_WRONLY, 0); err == nil {
		_, err := w.Write([]byte("x"))
		w.Close()
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("write into the stage memfd reopened: %v, want EPERM", err)
		}
	}
	// What it holds runs (busybox here, its applet named by argv[0]).
	cmd := exec.Command("/proc/self/fd/"+strconv.Itoa(int(mem.Fd())), "echo", "stage ran")
	cmd.Args[0] = "busybox"
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "stage ran" {
		t.Fatalf("exec the stage memfd: %q, %v", out, err)
	}

	// No trailer: not an error, the binary runs its stages itself.
	plain := shipped(t, head, nil, "")
	if _, err := StageInfo(plain); !IsNoStage(err) {
		t.Errorf("StageInfo(no trailer) = %v, want no stage", err)
	}
	for name, tr := range map[string]string{
		"length past the trailer": trailerFor(len(head), len(busybox)+1),
		"offset not the stage":    trailerFor(len(head)+1, len(busybox)-1),
		"not hex":                 stageMagic + strings.Repeat("z", 32),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := StageInfo(shipped(t, head, busybox, tr))
			if err == nil || IsNoStage(err) || !strings.Contains(err.Error(), "packaging/build.sh") {
				t.Errorf("StageInfo = %v, want an error that says to rebuild with packaging/build.sh", err)
			}
		})
	}
}
