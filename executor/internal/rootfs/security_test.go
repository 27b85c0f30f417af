//go:build linux

package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/internal/sys"
	"reconciled.dev/reconciled/internal/testutil"
)

// hostSecret makes a host file with known content in its own TempDir and
// checks at cleanup that it still has that content.
func hostSecret(t *testing.T) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	file = filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("original\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		data, err := os.ReadFile(file)
		if err != nil || string(data) != "original\n" {
			t.Errorf("host file %s now holds %q (%v), want %q", file, data, err, "original\n")
		}
	})
	return dir, file
}

func withoutDevMounts(ms []specs.Mount) []specs.Mount {
	var out []specs.Mount
	for _, m := range ms {
		if m.Destination != "/dev" && !strings.HasPrefix(m.Destination, "/dev/") {
			out = append(out, m)
		}
	}
	return out
}

// The rootfs's /dev/null is a symlink to a host file, and the host file's
// directory is bound into the container at its host path, so that following
// the symlink anywhere (before or after pivot_root) would reach the host
// file. A container write to /dev/null must not reach it.
func TestDevNullSymlinkToHostFile(t *testing.T) {
	for _, tc := range []struct {
		name      string
		devMounts bool
		legacy    bool
	}{
		{"spec-lists-dev", true, false},
		{"spec-without-dev", false, false},
		{"spec-without-dev-legacy", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newContainer(t)
			c.legacy = tc.legacy
			dir, file := hostSecret(t)
			if err := os.Symlink(file, filepath.Join(c.rootfs, "dev/null")); err != nil {
				t.Fatal(err)
			}
			if !tc.devMounts {
				c.spec.Mounts = withoutDevMounts(c.spec.Mounts)
			}
			c.spec.Mounts = append(c.spec.Mounts, specs.Mount{Destination: dir, Type: "bind", Source: dir, Options: []string{"rbind"}})
			out := c.run(`echo pwned > /dev/null && echo pwned >> /dev/null; ls -ln /dev/null; cat `+file, 0)
			if !strings.Contains(out, "1,   3") || !strings.HasPrefix(out, "c") {
				t.Errorf("/dev/null in the container is not the null device:\n%s", out)
			}
			if !strings.Contains(out, "original") {
				t.Errorf("the container does not see the host file through the bind:\n%s", out)
			}
		})
	}
}

// When /dev is bound from a directory whose null is a symlink to the host
// file, masking must refuse to bind it over the masked paths.
func TestMaskingRefusesFakeDevNull(t *testing.T) {
	c := newContainer(t)
	dir, file := hostSecret(t)
	devDir := filepath.Join(t.TempDir(), "dev")
	if err := os.Mkdir(devDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(devDir, "null")); err != nil {
		t.Fatal(err)
	}
	c.spec.Mounts = append(withoutDevMounts(c.spec.Mounts),
		specs.Mount{Destination: "/dev", Type: "bind", Source: devDir, Options: []string{"rbind"}},
		specs.Mount{Destination: dir, Type: "bind", Source: dir, Options: []string{"rbind"}})
	if err := os.WriteFile(filepath.Join(c.rootfs, "etc/masked"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.spec.Linux.MaskedPaths = []string{"/etc/masked"}
	out := c.run(`echo pwned > /etc/masked`, setupFailed)
	if !strings.Contains(out, ErrInvalidDevNull.Error()) {
		t.Errorf("Setup failed, but not because of /dev/null:\n%s", out)
	}
}

// A bind target that is a symlink to a host path lands inside the rootfs.
func TestBindTargetSymlinkOutsideRoot(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(map[bool]string{false: "newapi", true: "legacy"}[legacy], func(t *testing.T) {
			c := newContainer(t)
			c.legacy = legacy
			hostTarget := filepath.Join(t.TempDir(), "target")
			hostTarget2 := filepath.Join(t.TempDir(), "target2")
			for _, d := range []string{hostTarget, hostTarget2} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			src := t.TempDir()
			if err := os.WriteFile(filepath.Join(src, "marker"), []byte("marker\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(c.rootfs, "mnt"), 0o755); err != nil {
				t.Fatal(err)
			}
			// An absolute symlink to the host directory, and a relative one
			// that climbs far above the rootfs.
			if err := os.Symlink(hostTarget, filepath.Join(c.rootfs, "mnt/abs")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../../../../../../../../../"+strings.TrimPrefix(hostTarget2, "/"), filepath.Join(c.rootfs, "mnt/rel")); err != nil {
				t.Fatal(err)
			}
			c.spec.Mounts = append(c.spec.Mounts,
				specs.Mount{Destination: "/mnt/abs", Type: "bind", Source: src, Options: []string{"bind", "ro"}},
				specs.Mount{Destination: "/mnt/rel/sub", Type: "bind", Source: src, Options: []string{"bind"}},
			)
			out := c.run(`cat /mnt/abs/marker /mnt/rel/sub/marker; cat /proc/self/mountinfo`, 0)
			if strings.Count(out, "marker\n") != 2 {
				t.Errorf("the bind mounts are not visible through the symlinks:\n%s", out)
			}
			mounts := mountsIn(t, out)
			if e, ok := mounts[hostTarget]; !ok || !e.has("ro") {
				t.Errorf("no ro mount on %s (inside the container) in:\n%s", hostTarget, out)
			}
			if _, ok := mounts[hostTarget2+"/sub"]; !ok {
				t.Errorf("no mount on %s/sub (inside the container)", hostTarget2)
			}
			for _, d := range []string{hostTarget, hostTarget2 + "/sub"} {
				if fi, err := os.Stat(filepath.Join(c.rootfs, d)); err != nil || !fi.IsDir() {
					t.Errorf("the target %s was not created inside the rootfs: %v", d, err)
				}
			}
			for _, d := range []string{hostTarget, hostTarget2} {
				if ents, err := os.ReadDir(d); err != nil || len(ents) != 0 {
					t.Errorf("host directory %s was touched: %v %v", d, ents, err)
				}
			}
		})
	}
}

// A masked path that is a symlink to a host file masks nothing on the host:
// it is resolved inside the rootfs, where that path does not exist.
func TestMaskedPathSymlinkToHostFile(t *testing.T) {
	c := newContainer(t)
	dir, file := hostSecret(t)
	if err := os.Symlink(file, filepath.Join(c.rootfs, "etc/masked")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(c.rootfs, "hostview"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.spec.Mounts = append(c.spec.Mounts, specs.Mount{Destination: "/hostview", Type: "bind", Source: dir, Options: []string{"bind", "ro"}})
	c.spec.Linux.MaskedPaths = append(c.spec.Linux.MaskedPaths, "/etc/masked", "/etc/missing")
	out := c.run(`cat /hostview/secret; cat /proc/self/mountinfo`, 0)
	if !strings.HasPrefix(out, "original\n") {
		t.Errorf("the host file seen through /hostview was masked:\n%s", out)
	}
	mounts := mountsIn(t, out)
	for mp := range mounts {
		if strings.HasPrefix(mp, "/hostview/") || mp == file || mp == "/etc/masked" {
			t.Errorf("unexpected mount on %s", mp)
		}
	}
	if _, err := os.Stat(filepath.Join(c.rootfs, file)); err == nil {
		t.Errorf("masking created %s inside the rootfs", file)
	}
}

// A cwd that is a symlink out of the root, or a magic link, stays inside.
func TestChdir(t *testing.T) {
	for _, tc := range []struct{ cwd, want string }{
		{"/work/dir", "/work/dir"},
		{"/up", "/"},
		{"/abs/x", "/x"},
	} {
		t.Run(strings.ReplaceAll(tc.cwd, "/", "_"), func(t *testing.T) {
			c := newContainer(t)
			if err := os.Symlink("../../../../..", filepath.Join(c.rootfs, "up")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/", filepath.Join(c.rootfs, "abs")); err != nil {
				t.Fatal(err)
			}
			c.cwd = tc.cwd
			out := c.run(`pwd`, 0)
			if strings.TrimSpace(out) != tc.want {
				t.Errorf("pwd = %q, want %q", out, tc.want)
			}
		})
	}
	t.Run("magic-link", func(t *testing.T) {
		c := newContainer(t)
		c.cwd = "/proc/self/cwd"
		out := c.run(`pwd`, setupFailed)
		if !strings.Contains(out, "too many levels of symbolic links") {
			t.Errorf("Chdir to a magic link: %s", out)
		}
	})
}

// createDevice replaces a symlink where a node goes, and keeps anything
// else (a spec bind at that path). Runs in the test's own directory: no
// mount is made.
func TestCreateDeviceReplacesSymlink(t *testing.T) {
	testutil.RequireRoot(t)
	_, file := hostSecret(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(dir, "dev/null")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dev/kept"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	m := &mounter{root: root, linux: &specs.Linux{}}
	dirs := &dirCache{root: root}
	defer dirs.close()
	for _, d := range []specs.LinuxDevice{defaultDevices[0], {Path: "/dev/kept", Type: "c", Major: 1, Minor: 5}} {
		if err := m.createDevice(d, dirs); err != nil {
			t.Fatalf("%s: %v", d.Path, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "dev/null"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null is %s %d:%d", sys.TypeName(st.Mode), unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if err := unix.Lstat(filepath.Join(dir, "dev/kept"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("dev/kept was replaced: %v %s", err, sys.TypeName(st.Mode))
	}
}
