//go:build linux

package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
	"reconciled.dev/reconciled/internal/testutil"
)

func TestUnpackKeepsMetadata(t *testing.T) {
	testutil.RequireRoot(t)
	d := newLayerDir(t, t.TempDir(), "layer-meta")
	atime := time.Date(2002, 3, 4, 5, 6, 7, 123456789, time.UTC)
	longName := "long/" + strings.Repeat("n", 200) + "/" + strings.Repeat("f", 150)
	owned := func(uid, gid int) func(h *tar.Header) {
		return func(h *tar.Header) { h.Uid, h.Gid = uid, gid }
	}
	err := unpackEntries(t, d,
		dir("./", 0o755),
		dir("d/", 0o750).with(owned(1000, 1001)),
		reg("d/suid", "#!/bin/sh\n", 0o4755).with(owned(1234, 5678)).with(func(h *tar.Header) { h.AccessTime = atime }),
		reg("d/sgid", "x", 0o2711).with(owned(0, 50)),
		reg("d/xattr", "x", 0o644).with(withXattr("user.test", "value")).with(withXattr("trusted.test", "t")),
		dir("sticky/", 0o1777),
		dir("setgid/", 0o2755),
		sym("d/link", "../nowhere").with(owned(42, 43)),
		hardlink("d/hard", "d/suid"),
		ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: testTime}},
		ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop9", Mode: 0o660, Devmajor: 7, Devminor: 9, Gid: 6, ModTime: testTime}},
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o620, Uid: 7, ModTime: testTime}},
		reg(longName, "long", 0o600),
		// A child after its directory: the directory's mtime must survive.
		reg("d/later", "later", 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	wantTime := unix.NsecToTimespec(testTime.UnixNano())
	check := func(name string, typ, perm, uid, gid uint32) unix.Stat_t {
		t.Helper()
		st := lstat(t, filepath.Join(d, name))
		if st.Mode&unix.S_IFMT != typ {
			t.Errorf("%s: type %s, want %s", name, sys.TypeName(st.Mode), sys.TypeName(typ))
		}
		if st.Mode&0o7777 != perm && typ != unix.S_IFLNK {
			t.Errorf("%s: mode %#o, want %#o", name, st.Mode&0o7777, perm)
		}
		if st.Uid != uid || st.Gid != gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, uid, gid)
		}
		if st.Mtim != wantTime {
			t.Errorf("%s: mtime %v, want %v", name, time.Unix(st.Mtim.Unix()), testTime)
		}
		return st
	}
	check(".", unix.S_IFDIR, 0o755, 0, 0)
	check("d", unix.S_IFDIR, 0o750, 1000, 1001)
	suid := check("d/suid", unix.S_IFREG, 0o4755, 1234, 5678)
	if suid.Atim != unix.NsecToTimespec(atime.UnixNano()) {
		t.Errorf("d/suid: atime %v, want %v", time.Unix(suid.Atim.Unix()), atime)
	}
	check("d/sgid", unix.S_IFREG, 0o2711, 0, 50)
	check("sticky", unix.S_IFDIR, 0o1777, 0, 0)
	check("setgid", unix.S_IFDIR, 0o2755, 0, 0)
	check("d/link", unix.S_IFLNK, 0, 42, 43)
	if target, err := os.Readlink(filepath.Join(d, "d/link")); err != nil || target != "../nowhere" {
		t.Errorf("d/link -> %q, %v", target, err)
	}
	hard := check("d/hard", unix.S_IFREG, 0o4755, 1234, 5678)
	if hard.Ino != suid.Ino || hard.Nlink != 2 {
		t.Errorf("d/hard: inode %d nlink %d, want inode %d nlink 2", hard.Ino, hard.Nlink, suid.Ino)
	}
	null := check("dev/null", unix.S_IFCHR, 0o666, 0, 0)
	if unix.Major(null.Rdev) != 1 || unix.Minor(null.Rdev) != 3 {
		t.Errorf("dev/null: device %d:%d", unix.Major(null.Rdev), unix.Minor(null.Rdev))
	}
	loop := check("dev/loop9", unix.S_IFBLK, 0o660, 0, 6)
	if unix.Major(loop.Rdev) != 7 || unix.Minor(loop.Rdev) != 9 {
		t.Errorf("dev/loop9: device %d:%d", unix.Major(loop.Rdev), unix.Minor(loop.Rdev))
	}
	check("run/fifo", unix.S_IFIFO, 0o620, 7, 0)
	for k, want := range map[string]string{"user.test": "value", "trusted.test": "t"} {
		if got, err := getxattr(filepath.Join(d, "d/xattr"), k); err != nil || got != want {
			t.Errorf("d/xattr %s = %q, %v; want %q", k, got, err, want)
		}
	}
	if got := readFile(t, filepath.Join(d, longName)); got != "long" {
		t.Errorf("long name: %q", got)
	}
	// Parents created for entries without a directory entry: 0755 root.
	if st := lstat(t, filepath.Join(d, "dev")); st.Mode&0o7777 != 0o755 || st.Uid != 0 {
		t.Errorf("implicit parent dev: mode %#o uid %d", st.Mode&0o7777, st.Uid)
	}
}

func TestUnpackLaterEntriesReplace(t *testing.T) {
	testutil.RequireRoot(t)
	d := newLayerDir(t, t.TempDir(), "layer-replace")
	err := unpackEntries(t, d,
		reg("f2f", "first", 0o644),
		reg("f2f", "second", 0o600),
		reg("f2d", "file", 0o644),
		dir("f2d/", 0o711),
		dir("d2f/", 0o755),
		reg("d2f/child", "c", 0o644),
		reg("d2f", "now a file", 0o644),
		dir("d2d/", 0o755),
		reg("d2d/child", "kept", 0o644),
		dir("d2d/", 0o700).with(func(h *tar.Header) { h.Uid = 99 }),
		sym("s2f", "f2f"),
		reg("s2f", "replaced the symlink", 0o644),
		reg("target", "target", 0o644),
		hardlink("h2f", "target"),
		reg("h2f", "not through the link", 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(d, "f2f")); got != "second" {
		t.Errorf("f2f = %q", got)
	}
	if st := lstat(t, filepath.Join(d, "f2d")); st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Mode&0o777 != 0o711 {
		t.Errorf("f2d: %s %#o", sys.TypeName(st.Mode), st.Mode&0o777)
	}
	if got := readFile(t, filepath.Join(d, "d2f")); got != "now a file" {
		t.Errorf("d2f = %q", got)
	}
	if st := lstat(t, filepath.Join(d, "d2d")); st.Mode&0o777 != 0o700 || st.Uid != 99 {
		t.Errorf("d2d: mode %#o uid %d, want the later entry's 0700 99", st.Mode&0o777, st.Uid)
	}
	if got := readFile(t, filepath.Join(d, "d2d/child")); got != "kept" {
		t.Errorf("d2d/child = %q", got)
	}
	if st := lstat(t, filepath.Join(d, "s2f")); st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("s2f is a %s", sys.TypeName(st.Mode))
	}
	if got := readFile(t, filepath.Join(d, "f2f")); got != "second" {
		t.Errorf("f2f written through the symlink: %q", got)
	}
	if got := readFile(t, filepath.Join(d, "target")); got != "target" {
		t.Errorf("target written through the hard link: %q", got)
	}
	if a, b := lstat(t, filepath.Join(d, "target")), lstat(t, filepath.Join(d, "h2f")); a.Ino == b.Ino || a.Nlink != 1 {
		t.Errorf("h2f still shares target's inode (nlink %d)", a.Nlink)
	}
}

func TestUnpackWhiteouts(t *testing.T) {
	testutil.RequireRoot(t)
	d := newLayerDir(t, t.TempDir(), "layer-whiteouts")
	err := unpackEntries(t, d,
		reg("d/x", "unpacked, then whited out", 0o644),
		reg("d/.wh.x", "", 0o644),
		reg(".wh.gone", "", 0o644),
		dir("opq/", 0o755),
		reg("opq/.wh..wh..opq", "", 0o644),
		reg("opq/mine", "same layer", 0o644),
		reg("newopq/.wh..wh..opq", "", 0o644),
		reg(".wh..wh.plnk/123", "aufs", 0o644),
		reg("d/.wh..wh.aufs", "", 0o644),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"d/x", "gone"} {
		st := lstat(t, filepath.Join(d, name))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s: %s %d:%d, want the whiteout character device 0:0", name, sys.TypeName(st.Mode), unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
	for _, name := range []string{"opq", "newopq"} {
		if v, err := getxattr(filepath.Join(d, name), overlayOpaqueXattr); err != nil || v != "y" {
			t.Errorf("%s: %s = %q, %v; want y", name, overlayOpaqueXattr, v, err)
		}
	}
	if got := readFile(t, filepath.Join(d, "opq/mine")); got != "same layer" {
		t.Errorf("opq/mine = %q", got)
	}
	ensureNoEntry(t, filepath.Join(d, "opq/.wh..wh..opq"))
	ensureNoEntry(t, filepath.Join(d, "d/.wh..wh.aufs"))
	ensureNoEntry(t, filepath.Join(d, "d/.wh.x"))
	ensureNoEntry(t, filepath.Join(d, ".wh.gone"))
}

func TestUnpackRefuses(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name    string
		entries []ent
	}{
		{"overlay-xattr", []ent{dir("d/", 0o755).with(withXattr("trusted.overlay.redirect", "/etc"))}},
		{"unsupported-type", []ent{{hdr: tar.Header{Typeflag: 'Z', Name: "odd", Mode: 0o644}}}},
		{"hardlink-to-dir", []ent{dir("d/", 0o755), hardlink("h", "d")}},
		{"hardlink-to-missing", []ent{hardlink("h", "missing")}},
		{"hardlink-to-root", []ent{hardlink("h", "./")}},
		{"root-as-file", []ent{reg(".", "x", 0o644)}},
		{"whiteout-of-dotdot", []ent{reg("d/.wh...", "", 0o644)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newLayerDir(t, t.TempDir(), "layer-"+tc.name)
			err := unpackEntries(t, d, tc.entries...)
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("got %v, want ErrInvalidEntry", err)
			}
			t.Log(err)
		})
	}
}

func TestUnpackHardLinkToSymlink(t *testing.T) {
	testutil.RequireRoot(t)
	d := newLayerDir(t, t.TempDir(), "layer-hardsym")
	if err := unpackEntries(t, d, sym("s", "/etc/shadow"), hardlink("h", "s")); err != nil {
		t.Fatal(err)
	}
	s, h := lstat(t, filepath.Join(d, "s")), lstat(t, filepath.Join(d, "h"))
	if h.Mode&unix.S_IFMT != unix.S_IFLNK || h.Ino != s.Ino {
		t.Errorf("h: %s inode %d, want the symlink's inode %d", sys.TypeName(h.Mode), h.Ino, s.Ino)
	}
}

func TestUnpackCanceled(t *testing.T) {
	testutil.RequireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := newLayerDir(t, t.TempDir(), "layer-canceled")
	err := Unpack(ctx, bytes.NewReader(makeTar(t, reg("f", "x", 0o644))), d)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
