//go:build linux

package rootfs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/testutil"
)

// noChildMounts sees a mount with nothing mounted below it, and one with a
// mount below it, as /proc/self/mountinfo does.
func TestNoChildMounts(t *testing.T) {
	testutil.RequireRoot(t)
	top := filepath.Join(t.TempDir(), "top")
	sub := filepath.Join(top, "sub")
	if err := os.Mkdir(top, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", top, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(top, unix.MNT_DETACH) })
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	open := func(p string) *os.File {
		f, err := os.OpenFile(p, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	none, known := noChildMounts(open(top))
	if !known {
		t.Skip("the kernel has no listmount (Linux 6.8): readonlyBelow reads mountinfo")
	}
	if !none {
		t.Errorf("a tmpfs with nothing mounted below it has child mounts")
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	if none, known := noChildMounts(open(top)); !known || none {
		t.Errorf("a tmpfs with a tmpfs mounted below it: none %v, known %v; want false, true", none, known)
	}
}
