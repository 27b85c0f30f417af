//go:build linux

package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
	"reconciled.dev/reconciled/internal/testutil"
)

// TestMountWhiteoutsHide unpacks two layers, the upper one with a whiteout
// and an opaque directory, and mounts them: the real kernel must hide the
// whited-out file and the opaque directory's lower contents.
func TestMountWhiteoutsHide(t *testing.T) {
	requireOverlay(t)
	base := t.TempDir()
	lower := newLayerDir(t, base, "whiteout-lower")
	upper := newLayerDir(t, base, "whiteout-upper")
	target := newLayerDir(t, base, "whiteout-rootfs")
	if err := unpackEntries(t, lower,
		reg("gone", "lower", 0o644), reg("kept", "lower", 0o644),
		dir("opq/", 0o755), reg("opq/lower-only", "lower", 0o644), reg("opq/both", "lower", 0o644),
		dir("plain/", 0o755), reg("plain/lower-only", "lower", 0o644),
	); err != nil {
		t.Fatal(err)
	}
	if err := unpackEntries(t, upper,
		reg(".wh.gone", "", 0o644),
		dir("opq/", 0o755), reg("opq/.wh..wh..opq", "", 0o644), reg("opq/both", "upper", 0o644),
		reg("plain/upper-only", "upper", 0o644),
	); err != nil {
		t.Fatal(err)
	}
	mountForTest(t, target, []string{lower, upper}, "", "")
	ensureNoEntry(t, filepath.Join(target, "gone"))
	ensureNoEntry(t, filepath.Join(target, "opq/lower-only"))
	for name, want := range map[string]string{
		"kept": "lower", "opq/both": "upper", "plain/lower-only": "lower", "plain/upper-only": "upper",
	} {
		if got := readFile(t, filepath.Join(target, name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// Read-only: writes fail with EROFS.
	err := os.WriteFile(filepath.Join(target, "new"), []byte("x"), 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write to the read-only overlay: %v, want EROFS", err)
	}
}

// TestMountManyLongLayers mounts 130 layers whose paths together are far
// beyond the one page mount(2) takes, with "lowerdir+" and with the
// mount(2) fallback.
func TestMountManyLongLayers(t *testing.T) {
	requireOverlay(t)
	const n = 130
	base := t.TempDir()
	var layers []string
	total := 0
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("layer-with-a-long-name-to-overflow-the-option-page-%03d", i)
		l := newLayerDir(t, base, name)
		if len(l) <= 60 {
			t.Fatalf("layer path %s is not longer than 60 characters", l)
		}
		total += len(l) + 1
		if err := unpackEntries(t, l, reg(fmt.Sprintf("only-in-%03d", i), "x", 0o644), reg("top", fmt.Sprint(i), 0o644)); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	if total <= 4096 {
		t.Fatalf("the layer paths take %d bytes, want more than a page", total)
	}
	for _, tc := range []struct {
		name    string
		classic bool
	}{{"lowerdir-plus", false}, {"mount2-fallback", true}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.classic {
				old := noLowerdirPlus.Load()
				noLowerdirPlus.Store(true)
				t.Cleanup(func() { noLowerdirPlus.Store(old) })
			} else if !kernelAtLeast(6, 8) {
				testutil.SkipOrFail(t, "lowerdir+ needs Linux 6.8")
			}
			target := newLayerDir(t, base, "rootfs-"+tc.name)
			mountForTest(t, target, layers, "", "")
			for _, name := range []string{"only-in-000", "only-in-129", "only-in-064"} {
				if _, err := os.Stat(filepath.Join(target, name)); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
			if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
				for _, line := range strings.Split(string(data), "\n") {
					if strings.Contains(line, " "+target+" ") {
						t.Logf("mountinfo (%d bytes): %.160s...", len(line), line)
					}
				}
			}
			if got := readFile(t, filepath.Join(target, "top")); got != "129" {
				t.Errorf("top = %q, want the highest layer's 129", got)
			}
			if err := Unmount(target); err != nil {
				t.Fatal(err)
			}
			assertNotMounted(t, target)
		})
	}
}

func TestMountWritable(t *testing.T) {
	requireOverlay(t)
	base := t.TempDir()
	l0 := newLayerDir(t, base, "writable-l0")
	l1 := newLayerDir(t, base, "writable-l1")
	upper := newLayerDir(t, base, "writable-upper")
	work := newLayerDir(t, base, "writable-work")
	target := newLayerDir(t, base, "writable-rootfs")
	if err := unpackEntries(t, l0, reg("etc/conf", "lower", 0o644), reg("etc/old", "lower", 0o644)); err != nil {
		t.Fatal(err)
	}
	if err := unpackEntries(t, l1, dir("./", 0o755).with(func(h *tar.Header) { h.Gid = 5 }), reg("bin/tool", "tool", 0o755)); err != nil {
		t.Fatal(err)
	}
	// A 0700 upper, as a caller may create it: "/" must still be the
	// highest layer's 0755.
	if err := os.Chmod(upper, 0o700); err != nil {
		t.Fatal(err)
	}
	mountForTest(t, target, []string{l0, l1}, upper, work)
	if st := lstat(t, target); st.Mode&0o7777 != 0o755 || st.Gid != 5 {
		t.Errorf("/ of the writable overlay: mode %#o gid %d, want the top layer's 0755 gid 5", st.Mode&0o7777, st.Gid)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), []byte("written"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "etc/conf"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(target, "etc/old")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(upper, "new")); got != "written" {
		t.Errorf("upper/new = %q", got)
	}
	if got := readFile(t, filepath.Join(upper, "etc/conf")); got != "changed" {
		t.Errorf("upper/etc/conf = %q", got)
	}
	if got := readFile(t, filepath.Join(l0, "etc/conf")); got != "lower" {
		t.Errorf("the lower layer changed: %q", got)
	}
	if st := lstat(t, filepath.Join(upper, "etc/old")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper/etc/old: %s, want a whiteout", sys.TypeName(st.Mode))
	}
	if got := readFile(t, filepath.Join(target, "bin/tool")); got != "tool" {
		t.Errorf("bin/tool = %q", got)
	}
}

func TestMountSingleLayerReadOnlyBind(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	l := newLayerDir(t, base, "single-layer")
	target := newLayerDir(t, base, "single-rootfs")
	if err := unpackEntries(t, l, reg("hello", "world", 0o644)); err != nil {
		t.Fatal(err)
	}
	mountForTest(t, target, []string{l}, "", "")
	if got := readFile(t, filepath.Join(target, "hello")); got != "world" {
		t.Errorf("hello = %q", got)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write to the read-only bind: %v, want EROFS", err)
	}
	if m, err := Mounted(target); err != nil || !m {
		t.Errorf("Mounted = %v, %v", m, err)
	}
	if !mountPoints(t)[target] {
		t.Errorf("%s not in /proc/self/mountinfo", target)
	}
	// The layer itself stays writable.
	if err := os.WriteFile(filepath.Join(l, "new"), []byte("x"), 0o644); err != nil {
		t.Errorf("the layer directory became read-only: %v", err)
	}
}

func TestUnmountIdempotent(t *testing.T) {
	requireOverlay(t)
	base := t.TempDir()
	l0 := newLayerDir(t, base, "idem-l0")
	l1 := newLayerDir(t, base, "idem-l1")
	target := newLayerDir(t, base, "idem-rootfs")
	mountForTest(t, target, []string{l0, l1}, "", "")
	// Stacked twice: Unmount removes both.
	mountForTest(t, target, []string{l0, l1}, "", "")
	if m, err := Mounted(target); err != nil || !m {
		t.Fatalf("Mounted = %v, %v", m, err)
	}
	for i := 0; i < 2; i++ {
		if err := Unmount(target); err != nil {
			t.Fatalf("Unmount #%d: %v", i+1, err)
		}
		assertNotMounted(t, target)
	}
	if err := Unmount(filepath.Join(base, "no-such-dir")); err != nil {
		t.Errorf("Unmount of a missing path: %v", err)
	}
	if m, err := Mounted(base); err != nil || m {
		t.Errorf("Mounted(plain dir) = %v, %v", m, err)
	}
	if m, err := Mounted("/proc"); err != nil || !m {
		t.Errorf("Mounted(/proc) = %v, %v", m, err)
	}
}

func TestMountErrors(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	l := newLayerDir(t, base, "errors-layer")
	target := newLayerDir(t, base, "errors-rootfs")
	t.Cleanup(func() { _ = Unmount(target) })
	for _, tc := range []struct {
		name        string
		layers      []string
		upper, work string
		want        string
	}{
		{"no-layers", nil, "", "", "no layers"},
		{"upper-without-work", []string{l}, l, "", "go together"},
		{"missing-layer", []string{l, filepath.Join(base, "missing")}, "", "", "layer 1"},
		{"too-many", make([]string, maxLayers+1), "", "", "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Mount(target, tc.layers, tc.upper, tc.work)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			assertNotMounted(t, target)
		})
	}
}

// TestMountOverlayUnusable asks for an overlay the kernel refuses: an
// upper directory on an overlayfs (overlay cannot be an upper layer). The
// error says that overlayfs is not usable here.
func TestMountOverlayUnusable(t *testing.T) {
	requireOverlay(t)
	base := t.TempDir()
	l0 := newLayerDir(t, base, "unusable-l0")
	l1 := newLayerDir(t, base, "unusable-l1")
	up := newLayerDir(t, base, "unusable-up")
	wk := newLayerDir(t, base, "unusable-wk")
	outer := newLayerDir(t, base, "unusable-outer")
	mountForTest(t, outer, []string{l0, l1}, up, wk)
	for _, d := range []string{"up2", "wk2"} {
		if err := os.Mkdir(filepath.Join(outer, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	target := newLayerDir(t, base, "unusable-rootfs")
	t.Cleanup(func() { _ = Unmount(target) })
	err := Mount(target, []string{l0, l1}, filepath.Join(outer, "up2"), filepath.Join(outer, "wk2"))
	if !errors.Is(err, ErrOverlayUnusable) || !strings.Contains(err.Error(), "overlayfs is not usable here: ") {
		t.Fatalf("got %v, want ErrOverlayUnusable", err)
	}
	t.Log(err)
	assertNotMounted(t, target)
}
