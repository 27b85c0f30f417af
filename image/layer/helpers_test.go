//go:build linux

package layer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"reconciled.dev/reconciled/internal/testutil"
)

// ent is one tar entry of a test layer: a header and, for regular files,
// the contents.
type ent struct {
	hdr  tar.Header
	body string
}

var testTime = time.Date(2001, 2, 3, 4, 5, 6, 789000000, time.UTC)

func reg(name, body string, mode int64) ent {
	return ent{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: testTime}, body}
}

func dir(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: testTime}}
}

func sym(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: testTime}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: testTime}}
}

// with returns e with its header changed by fn.
func (e ent) with(fn func(h *tar.Header)) ent {
	fn(&e.hdr)
	return e
}

func withXattr(k, v string) func(h *tar.Header) {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[paxXattrPrefix+k] = v
	}
}

// makeTar writes the entries as a PAX tar stream.
func makeTar(t testing.TB, entries ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if e.body != "" {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatalf("tar body %q: %v", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newLayerDir returns a new empty directory to unpack into, under base.
func newLayerDir(t testing.TB, base, name string) string {
	t.Helper()
	d := filepath.Join(base, name)
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// unpackEntries unpacks the entries as one layer into dir.
func unpackEntries(t testing.TB, dir string, entries ...ent) error {
	t.Helper()
	return Unpack(context.Background(), bytes.NewReader(makeTar(t, entries...)), dir)
}

func lstat(t testing.TB, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return st
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func getxattr(p, k string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, k, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// fileState is what a test records of a file outside the layer directory
// to prove it untouched.
type fileState struct {
	Mode, UID, GID uint32
	Nlink          uint64
	Mtime          unix.Timespec
	Content        string
	Xattrs         string
}

// snapshot records every file below root except those below skip.
func snapshot(t testing.TB, root, skip string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fsx := fileState{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Nlink: uint64(st.Nlink), Mtime: st.Mtim}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fsx.Content = string(b)
		}
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil {
			names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			fsx.Xattrs = strings.Join(names, ",")
		}
		out[p] = fsx
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return out
}

// escapeFixture is a probe directory with a file, beside a layer
// directory, and a snapshot of everything outside the layer directory.
type escapeFixture struct {
	base, probe, probeFile, layer string
	before                        map[string]fileState
}

func newEscapeFixture(t *testing.T) *escapeFixture {
	t.Helper()
	base := t.TempDir()
	f := &escapeFixture{base: base, probe: filepath.Join(base, "probe")}
	f.probeFile = filepath.Join(f.probe, "file")
	if err := os.Mkdir(f.probe, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.probeFile, []byte("probe contents\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range []string{f.probeFile, f.probe} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	f.layer = newLayerDir(t, base, "layer")
	// The parent of base holds the t.TempDir directories of this test: a
	// "../.." that escaped the layer would land there.
	f.before = snapshot(t, filepath.Dir(base), f.layer)
	return f
}

// check fails the test if anything outside the layer directory changed.
func (f *escapeFixture) check(t *testing.T) {
	t.Helper()
	after := snapshot(t, filepath.Dir(f.base), f.layer)
	if !reflect.DeepEqual(f.before, after) {
		for p, a := range after {
			if b, ok := f.before[p]; !ok {
				t.Errorf("created outside the layer: %s %+v", p, a)
			} else if a != b {
				t.Errorf("changed outside the layer: %s\n before %+v\n after  %+v", p, b, a)
			}
		}
		for p := range f.before {
			if _, ok := after[p]; !ok {
				t.Errorf("removed outside the layer: %s", p)
			}
		}
	}
	if got := readFile(t, f.probeFile); got != "probe contents\n" {
		t.Errorf("probe file contents: %q", got)
	}
}

// mountPoints returns the mount points in /proc/self/mountinfo.
func mountPoints(t testing.TB) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		out[unescapeOctal(fields[4])] = true
	}
	return out
}

func unescapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// requireOverlay skips (or fails under RECONCILED_REQUIRE_ROOT=1) unless
// the test runs as root on a kernel with overlayfs.
func requireOverlay(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "\toverlay\n") {
		// Possibly a module not yet loaded: Mount loads it. Try once.
		probe := t.TempDir()
		l := newLayerDir(t, probe, "l")
		tg := newLayerDir(t, probe, "t")
		t.Cleanup(func() { _ = Unmount(tg) })
		if err := Mount(tg, []string{l, l}, "", ""); errors.Is(err, ErrOverlayUnusable) {
			testutil.SkipOrFail(t, "overlayfs is not available: %v", err)
		}
	}
}

// mountForTest mounts like Mount and unmounts in t.Cleanup, which runs
// before t.TempDir's removal (cleanups run last registered first).
func mountForTest(t *testing.T, target string, layers []string, upper, work string) {
	t.Helper()
	t.Cleanup(func() {
		if err := Unmount(target); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := Mount(target, layers, upper, work); err != nil {
		t.Fatalf("Mount: %v", err)
	}
}

func assertNotMounted(t testing.TB, target string) {
	t.Helper()
	if mountPoints(t)[target] {
		t.Errorf("%s is still in /proc/self/mountinfo", target)
	}
	m, err := Mounted(target)
	if err != nil {
		t.Fatal(err)
	}
	if m {
		t.Errorf("Mounted(%s) = true after Unmount", target)
	}
}

func ensureNoEntry(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: want no such file, got %v", p, err)
	}
}
