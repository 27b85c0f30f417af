//go:build linux

package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		opts []string
		want mountOptions
	}{
		{"tmpfs", []string{"nosuid", "strictatime", "mode=755", "size=65536k"}, mountOptions{
			attrSet: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_STRICTATIME, attrClr: unix.MOUNT_ATTR__ATIME,
			data: []string{"mode=755", "size=65536k"}}},
		{"bind", []string{"ro", "rprivate"}, mountOptions{bind: true,
			attrSet: unix.MOUNT_ATTR_RDONLY, propagation: []uintptr{unix.MS_PRIVATE | unix.MS_REC}}},
		{"none", []string{"rbind", "rw", "suid", "shared", "slave"}, mountOptions{bind: true, recursive: true,
			attrClr: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID, propagation: []uintptr{unix.MS_SHARED, unix.MS_SLAVE}}},
		{"none", []string{"bind", "rro", "rnosuid", "rnoatime"}, mountOptions{bind: true,
			recSet: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOATIME, recClr: unix.MOUNT_ATTR__ATIME}},
		{"devpts", []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}, mountOptions{
			attrSet: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC, data: []string{"newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}}},
		{"ext4", []string{"ro", "rw", "sync", "defaults", "noatime", "atime"}, mountOptions{
			attrClr: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR__ATIME, sbFlags: []string{"sync"}, msSB: unix.MS_SYNCHRONOUS}},
	} {
		got, err := parseOptions(tc.typ, tc.opts)
		if err != nil {
			t.Errorf("%v: %v", tc.opts, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v:\n got %+v\nwant %+v", tc.opts, got, tc.want)
		}
	}
	for _, tc := range []struct {
		opts          []string
		idmap, ridmap bool
	}{{[]string{"bind", "idmap"}, true, false}, {[]string{"rbind", "ridmap"}, true, true}} {
		got, err := parseOptions("bind", tc.opts)
		if err != nil || got.idmap != tc.idmap || got.ridmap != tc.ridmap {
			t.Errorf("%v: idmap %v ridmap %v (%v), want %v %v", tc.opts, got.idmap, got.ridmap, err, tc.idmap, tc.ridmap)
		}
	}
	for _, bad := range []string{"remount", "tmpcopyup"} {
		if _, err := parseOptions("bind", []string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parsePropagation("sideways"); err == nil {
		t.Error("unknown rootfsPropagation accepted")
	}
}

func TestMsFlagsRoundTrip(t *testing.T) {
	a := uint64(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NOATIME)
	if got := msFlags(a); got != unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_NOATIME {
		t.Errorf("msFlags = %#x", got)
	}
	st := int64(unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC | unix.ST_NOATIME)
	if got := attrsFromStatfs(st); got != a {
		t.Errorf("attrsFromStatfs = %#x, want %#x", got, a)
	}
	if got := attrsFromStatfs(unix.ST_RELATIME); got != 0 {
		t.Errorf("relatime: %#x", got)
	}
	if got := attrsFromStatfs(0); got != unix.MOUNT_ATTR_STRICTATIME {
		t.Errorf("strictatime: %#x", got)
	}
}

// resolveTree makes a directory tree with symlinks that try to leave it.
func resolveTree(t *testing.T) (root *os.File, dir, outside string) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "root")
	outside = filepath.Join(base, "outside")
	for _, d := range []string{dir + "/a/b", outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{
		"abs":      outside,                  // absolute, to a host dir
		"up":       "../../../../..",         // relative, far up
		"a/b/dot":  "../../a",                // inside
		"loop":     "loop",                   // itself
		"a/uphost": "../../outside",          // relative to the host sibling
		"magic":    "/proc/self/root",        // a magic link's path, read as text
		"dangle":   outside + "/new/created", // dangling, into the host
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "a/file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, dir, outside
}

// realPath names what an O_PATH fd refers to, via /proc.
func realPath(t *testing.T, f *os.File) string {
	t.Helper()
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func withWalk(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", f)
	t.Run("walk", func(t *testing.T) {
		noOpenat2 = true
		defer func() { noOpenat2 = false }()
		f(t)
	})
}

func TestOpenInRoot(t *testing.T) {
	withWalk(t, func(t *testing.T) {
		root, dir, _ := resolveTree(t)
		for _, tc := range []struct {
			path, want string // want "" : must fail
			errno      unix.Errno
		}{
			{"/", dir, 0},
			{"..", dir, 0},
			{"/a/b/../../a/file", dir + "/a/file", 0},
			{"abs", "", unix.ENOENT},
			{"up", dir, 0},
			{"up/a/b", dir + "/a/b", 0},
			{"a/b/dot/file", dir + "/a/file", 0},
			{"a/uphost", "", unix.ENOENT},
			{"loop", "", unix.ELOOP},
			{"a/file/x", "", unix.ENOTDIR},
		} {
			f, err := OpenInRoot(root, tc.path)
			if tc.want == "" {
				if err == nil {
					t.Errorf("%s: opened %s", tc.path, realPath(t, f))
					f.Close()
				} else if !errors.Is(err, tc.errno) {
					t.Errorf("%s: %v, want %v", tc.path, err, tc.errno)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", tc.path, err)
				continue
			}
			if got := realPath(t, f); got != tc.want {
				t.Errorf("%s: opened %s, want %s", tc.path, got, tc.want)
			}
			f.Close()
		}
		// A magic link's text is resolved inside the root (walk) or refused
		// (openat2), never followed to the real target.
		if f, err := OpenInRoot(root, "magic/a"); err == nil {
			if got := realPath(t, f); got != dir+"/a" {
				t.Errorf("magic/a: opened %s", got)
			}
			f.Close()
		}
	})
}

func TestMkdirAllInRoot(t *testing.T) {
	withWalk(t, func(t *testing.T) {
		root, dir, outside := resolveTree(t)
		f, err := MkdirAllInRoot(root, "/dangle/deeper", 0o700)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if got, want := realPath(t, f), filepath.Join(dir, outside, "new/created/deeper"); got != want {
			t.Errorf("created %s, want %s", got, want)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Errorf("created outside the root: %v", ents)
		}
		fi, err := os.Stat(filepath.Join(dir, outside, "new/created/deeper"))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("mode: %v %v", fi, err)
		}
		if _, err := MkdirAllInRoot(root, "/a/file/sub", 0o755); !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("mkdir below a file: %v", err)
		}
		if _, err := MkdirAllInRoot(root, "/a/file", 0o755); !errors.Is(err, ErrUnexpectedType) {
			t.Errorf("mkdir of a file: %v", err)
		}
		g, err := openOrCreate(root, "/abs/newfile", createFile, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if got, want := realPath(t, g), filepath.Join(dir, outside, "newfile"); got != want {
			t.Errorf("created %s, want %s", got, want)
		}
	})
}
