//go:build linux

package layer

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
	"reconciled.dev/reconciled/internal/testutil"
)

// TestUnpackEscapes unpacks hostile layers beside a probe directory and
// asserts that nothing outside the layer directory is created, written,
// chmod-ed, chown-ed, touched or given xattrs. Each case either fails
// (wantErr) or succeeds with its entries inside the layer (check).
func TestUnpackEscapes(t *testing.T) {
	testutil.RequireRoot(t)
	evil := func(h *tar.Header) {
		h.Mode = 0o4777
		h.Uid, h.Gid = 4242, 4243
		withXattr("user.evil", "1")(h)
		withXattr("trusted.evil", "1")(h)
	}
	// evilSpecial is evil for files that cannot have user.* xattrs
	// (symlinks, devices, fifos: the kernel refuses them).
	evilSpecial := func(h *tar.Header) {
		h.Mode = 0o4777
		h.Uid, h.Gid = 4242, 4243
		withXattr("trusted.evil", "1")(h)
	}
	// inRootOf is where an absolute host path lands inside the layer.
	inRootOf := func(f *escapeFixture, p string) string { return filepath.Join(f.layer, p) }
	type tc struct {
		name    string
		entries func(f *escapeFixture) []ent
		wantErr bool
		check   func(t *testing.T, f *escapeFixture)
	}
	cases := []tc{
		{
			// containerd CVE-2021-32760: a hard link to a symlink that points
			// outside, whose mode was then applied with chmod (following the
			// symlink).
			name: "cve-2021-32760-hardlink-to-symlink-chmod",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym("foo", f.probeFile), hardlink("bar", "foo").with(evilSpecial)}
			},
			check: func(t *testing.T, f *escapeFixture) {
				if st := lstat(t, filepath.Join(f.layer, "bar")); st.Mode&unix.S_IFMT != unix.S_IFLNK {
					t.Errorf("bar is a %s, want the symlink", sys.TypeName(st.Mode))
				}
			},
		},
		{
			name: "cve-2021-32760-relative-symlink",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym("foo", "../../../../../../"+f.probeFile), hardlink("bar", "foo").with(evilSpecial)}
			},
		},
		{
			// umoci CVE-2021-29136: the layer root as a symlink to outside,
			// then files written through it.
			name: "cve-2021-29136-root-symlink-dot",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym(".", f.probe), reg("file", "pwned", 0o644), reg("new", "pwned", 0o644)}
			},
			wantErr: true,
		},
		{
			name: "cve-2021-29136-root-symlink-slash",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym("/", f.probe), reg("file", "pwned", 0o644)}
			},
			wantErr: true,
		},
		{
			name: "cve-2021-29136-root-symlink-dotdot",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym("a/..", f.probe), reg("file", "pwned", 0o644)}
			},
			wantErr: true,
		},
		{
			// docker CVE-2018-15664 (symlink exchange) in its static form: a
			// parent that is a symlink to outside. The absolute target is
			// resolved inside the layer, where it does not exist.
			name: "cve-2018-15664-parent-symlink-absolute",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym("a", f.probe), reg("a/x", "pwned", 0o644), reg("a/file", "pwned", 0o644)}
			},
			wantErr: true,
		},
		{
			name: "parent-symlink-relative",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym("b", "../../../../probe"), reg("b/x", "pwned", 0o644)}
			},
			wantErr: true,
		},
		{
			// The same symlink when its target exists inside the layer: the
			// entry lands there.
			name: "parent-symlink-resolved-inside",
			entries: func(f *escapeFixture) []ent {
				return []ent{dir("probe/", 0o755), sym("b", "../../../../probe"), reg("b/x", "inside", 0o644),
					dir(strings.TrimPrefix(f.probe, "/")+"/", 0o755), sym("c", f.probe), reg("c/file", "inside", 0o644)}
			},
			check: func(t *testing.T, f *escapeFixture) {
				if got := readFile(t, filepath.Join(f.layer, "probe/x")); got != "inside" {
					t.Errorf("probe/x = %q", got)
				}
				if got := readFile(t, inRootOf(f, f.probeFile)); got != "inside" {
					t.Errorf("%s in the layer = %q", f.probeFile, got)
				}
			},
		},
		{
			name: "parent-symlink-dotdot",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym("up", "../../.."), reg("up/x", "inside", 0o644), reg("up/up/y", "inside", 0o644)}
			},
			check: func(t *testing.T, f *escapeFixture) {
				for _, n := range []string{"x", "y"} {
					if got := readFile(t, filepath.Join(f.layer, n)); got != "inside" {
						t.Errorf("%s = %q", n, got)
					}
				}
			},
		},
		{
			name: "parent-magic-link",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym("m", "/proc/self/root"), reg("m"+f.probe+"/x", "pwned", 0o644)}
			},
			wantErr: true,
		},
		{
			name: "dotdot-name",
			entries: func(f *escapeFixture) []ent {
				return []ent{reg("../../probe/x", "inside", 0o644), reg("a/../../../probe/file", "inside", 0o644)}
			},
			check: func(t *testing.T, f *escapeFixture) {
				for _, n := range []string{"probe/x", "probe/file"} {
					if got := readFile(t, filepath.Join(f.layer, n)); got != "inside" {
						t.Errorf("%s = %q", n, got)
					}
				}
			},
		},
		{
			name: "absolute-name",
			entries: func(f *escapeFixture) []ent {
				return []ent{reg(f.probe+"/x", "inside", 0o644), reg(f.probeFile, "inside", 0o644).with(evil)}
			},
			check: func(t *testing.T, f *escapeFixture) {
				if got := readFile(t, inRootOf(f, f.probeFile)); got != "inside" {
					t.Errorf("%s in the layer = %q", f.probeFile, got)
				}
			},
		},
		{
			name:    "hardlink-absolute-outside",
			entries: func(f *escapeFixture) []ent { return []ent{hardlink("h", f.probeFile)} },
			wantErr: true,
		},
		{
			name:    "hardlink-dotdot-outside",
			entries: func(f *escapeFixture) []ent { return []ent{hardlink("h", "../../probe/file")} },
			wantErr: true,
		},
		{
			name: "hardlink-through-parent-symlink",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym("p", f.probe), hardlink("h", "p/file")}
			},
			wantErr: true,
		},
		{
			name: "hardlink-through-magic-link",
			entries: func(f *escapeFixture) []ent {
				return []ent{hardlink("h", "/proc/self/root"+f.probeFile)}
			},
			wantErr: true,
		},
		{
			// A hard link, then a regular file of that name: the file
			// replaces the link and never writes into the shared inode.
			name: "hardlink-then-write",
			entries: func(f *escapeFixture) []ent {
				return []ent{reg("t", "original", 0o644), hardlink("h", "t"), reg("h", "pwned", 0o4777)}
			},
			check: func(t *testing.T, f *escapeFixture) {
				if got := readFile(t, filepath.Join(f.layer, "t")); got != "original" {
					t.Errorf("t = %q", got)
				}
				if st := lstat(t, filepath.Join(f.layer, "t")); st.Mode&0o7777 != 0o644 || st.Nlink != 1 {
					t.Errorf("t: mode %#o nlink %d", st.Mode&0o7777, st.Nlink)
				}
			},
		},
		{
			// Every kind of entry over a symlink to outside: each replaces
			// the symlink; none chmods, chowns, touches or sets xattrs
			// through it.
			name: "metadata-through-symlink",
			entries: func(f *escapeFixture) []ent {
				var es []ent
				for _, e := range []ent{
					dir("s-dir", 0o777).with(evil),
					reg("s-reg", "pwned", 0o644).with(evil),
					ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "s-fifo", ModTime: testTime}}.with(evilSpecial),
					ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "s-chr", Devmajor: 1, Devminor: 3, ModTime: testTime}}.with(evilSpecial),
					sym("s-sym", "elsewhere").with(evilSpecial),
				} {
					es = append(es, sym(e.hdr.Name, f.probeFile), e)
				}
				// And the metadata of a symlink to outside: lchown, no chmod,
				// times and xattrs on the link itself.
				es = append(es, sym("s-own", f.probeFile).with(func(h *tar.Header) {
					h.Uid, h.Gid = 4242, 4243
					withXattr("trusted.evil", "1")(h)
				}))
				// A symlink to the probe directory, then whiteouts below it.
				es = append(es, sym("w", f.probe), reg("w/.wh.file", "", 0o644), reg("w/.wh..wh..opq", "", 0o644))
				return es
			},
			wantErr: true, // the whiteouts below the dangling "w"
			check: func(t *testing.T, f *escapeFixture) {
				for _, n := range []string{"s-dir", "s-reg", "s-fifo", "s-chr"} {
					if st := lstat(t, filepath.Join(f.layer, n)); st.Mode&unix.S_IFMT == unix.S_IFLNK {
						t.Errorf("%s is still the symlink", n)
					}
				}
				st := lstat(t, filepath.Join(f.layer, "s-own"))
				if st.Uid != 4242 || st.Gid != 4243 {
					t.Errorf("s-own: owner %d:%d", st.Uid, st.Gid)
				}
			},
		},
		{
			// A directory, later replaced by a symlink to outside: the
			// deferred directory times must not follow it.
			name: "dir-times-after-replace",
			entries: func(f *escapeFixture) []ent {
				return []ent{dir("d/", 0o755), reg("d/x", "x", 0o644), sym("d", f.probe), dir("e/", 0o755), sym("e", f.probeFile)}
			},
		},
		{
			name: "opaque-through-symlink",
			entries: func(f *escapeFixture) []ent {
				return []ent{sym("o", f.probe), reg("o/.wh..wh..opq", "", 0o644)}
			},
			wantErr: true,
		},
		{
			name: "whiteout-of-symlinked-parent-name",
			entries: func(f *escapeFixture) []ent {
				// Whiting out the symlink removes the symlink, not its target.
				return []ent{sym("p", f.probe), sym("pf", f.probeFile), reg(".wh.p", "", 0o644), reg(".wh.pf", "", 0o644)}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newEscapeFixture(t)
			err := unpackEntries(t, f.layer, c.entries(f)...)
			switch {
			case c.wantErr && err == nil:
				t.Error("Unpack succeeded, want an error")
			case !c.wantErr && err != nil:
				t.Errorf("Unpack: %v", err)
			case err != nil:
				t.Logf("refused: %v", err)
			}
			f.check(t)
			if c.check != nil && (err == nil || c.wantErr) {
				c.check(t, f)
			}
			if _, err := os.Lstat(f.probeFile); err != nil {
				t.Errorf("probe file: %v", err)
			}
		})
	}
}
