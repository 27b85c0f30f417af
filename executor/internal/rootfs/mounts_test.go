//go:build linux

package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func forBothAPIs(t *testing.T, f func(t *testing.T, legacy bool)) {
	t.Run("newapi", func(t *testing.T) { f(t, false) })
	t.Run("legacy", func(t *testing.T) { f(t, true) })
}

func TestReadonlyRoot(t *testing.T) {
	forBothAPIs(t, func(t *testing.T, legacy bool) {
		c := newContainer(t)
		c.legacy = legacy
		c.spec.Root.Readonly = true
		c.spec.Mounts = append(c.spec.Mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "size=1m"}})
		out := c.run(`touch /newfile 2>&1; touch /tmp/ok /dev/shm/ok && echo writable; cat /proc/self/mountinfo`, 0)
		if !strings.Contains(out, "Read-only file system") {
			t.Errorf("touch on / did not fail with EROFS:\n%s", out)
		}
		if !strings.Contains(out, "writable") {
			t.Errorf("mounts below / are not writable:\n%s", out)
		}
		if e := mountsIn(t, out)["/"]; !e.has("ro") {
			t.Errorf("/ is %q, want ro", e.options)
		}
		if _, err := os.Stat(filepath.Join(c.rootfs, "newfile")); err == nil {
			t.Error("the container wrote to its read-only root")
		}
	})
}

func TestReadonlyAndMaskedPaths(t *testing.T) {
	forBothAPIs(t, func(t *testing.T, legacy bool) {
		c := newContainer(t)
		c.legacy = legacy
		if err := os.MkdirAll(filepath.Join(c.rootfs, "srv/secret-dir"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{"srv/secret-file": "s3cret", "srv/secret-dir/f": "s3cret", "srv/data": "d"} {
			if err := os.WriteFile(filepath.Join(c.rootfs, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		c.spec.Linux.MaskedPaths = append(c.spec.Linux.MaskedPaths, "/srv/secret-file", "/srv/secret-dir", "/srv/nonexistent")
		c.spec.Linux.ReadonlyPaths = append(c.spec.Linux.ReadonlyPaths, "/srv/data", "/srv/nonexistent")
		// ns_last_pid is per pid namespace: a write that got through would
		// not touch the host.
		out := c.run(`
echo 5 > /proc/sys/kernel/ns_last_pid
echo x > /srv/data
echo "file:[$(cat /srv/secret-file)]"
echo "dir:[$(ls -A /srv/secret-dir)]"
touch /srv/secret-dir/new
echo "keys:[$(cat /proc/keys)]"
echo "fw:[$(ls -A /sys/firmware)]"
`, 0)
		for _, want := range []string{"file:[]", "dir:[]", "keys:[]", "fw:[]"} {
			if !strings.Contains(out, want) {
				t.Errorf("output has no %q:\n%s", want, out)
			}
		}
		if n := strings.Count(out, "Read-only file system"); n != 3 {
			t.Errorf("want 3 EROFS failures (ns_last_pid, /srv/data, /srv/secret-dir/new), got %d:\n%s", n, out)
		}
	})
}

func TestTmpfsAndBindOptions(t *testing.T) {
	forBothAPIs(t, func(t *testing.T, legacy bool) {
		c := newContainer(t)
		c.legacy = legacy
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, "f"), []byte("content\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		srcFile := filepath.Join(t.TempDir(), "single")
		if err := os.WriteFile(srcFile, []byte("single\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.spec.Mounts = append(c.spec.Mounts,
			specs.Mount{Destination: "/data", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "size=1m", "mode=1777"}},
			specs.Mount{Destination: "/ro", Type: "bind", Source: src, Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}},
			specs.Mount{Destination: "/rw", Source: src, Options: []string{"rbind", "rw"}},
			specs.Mount{Destination: "/etc/deep/single", Source: srcFile, Options: []string{"bind", "ro"}},
			specs.Mount{Destination: "/dev/termination-log", Source: srcFile, Options: []string{"bind"}},
		)
		out := c.run(`
df -k /data | tail -n1
stat -c 'mode=%a' /data
cat /ro/f /etc/deep/single
cat /dev/termination-log
touch /ro/new
touch /rw/new && echo rw-ok
echo x >> /etc/deep/single
cat /proc/self/mountinfo`, 0)
		if !strings.Contains(out, " 1024 ") {
			t.Errorf("/data is not 1m:\n%s", out)
		}
		if !strings.Contains(out, "mode=1777") {
			t.Errorf("/data mode is not 1777:\n%s", out)
		}
		if !strings.Contains(out, "content\nsingle\nsingle\n") || !strings.Contains(out, "rw-ok") {
			t.Errorf("bind contents:\n%s", out)
		}
		if n := strings.Count(out, "Read-only file system"); n != 2 {
			t.Errorf("want 2 EROFS failures, got %d:\n%s", n, out)
		}
		m := mountsIn(t, out)
		for mp, opts := range map[string][]string{
			"/data":            {"rw", "nosuid", "nodev", "noexec"},
			"/ro":              {"ro", "nosuid", "nodev", "noexec"},
			"/rw":              {"rw"},
			"/etc/deep/single": {"ro"},
			"/dev":             {"nosuid"},
			"/dev/pts":         {"nosuid", "noexec"},
			"/proc":            {"nosuid", "nodev", "noexec"},
			"/sys":             {"ro", "nosuid", "nodev", "noexec"},
			"/proc/sys":        {"ro", "nosuid", "nodev", "noexec"},
		} {
			e, ok := m[mp]
			if !ok {
				t.Errorf("no mount on %s", mp)
				continue
			}
			for _, o := range opts {
				if !e.has(o) {
					t.Errorf("%s has options %q, want %s", mp, e.options, o)
				}
			}
		}
		if _, err := os.Stat(filepath.Join(src, "new")); err != nil {
			t.Errorf("the rw bind did not write through: %v", err)
		}
	})
}

// As in runc (its mounts_recursive.bats): an "ro" rbind makes its top
// mount read-only and leaves the mounts below writable; "rro" makes the
// whole tree read-only; a plain bind does not take the mounts below its
// source with it.
func TestRecursiveBind(t *testing.T) {
	c := newContainer(t)
	// The first mount makes a submount below <rootfs>/a (in the child's
	// mount namespace), which the binds of <rootfs>/a then see.
	c.spec.Mounts = append(c.spec.Mounts,
		specs.Mount{Destination: "/a/sub", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}},
		specs.Mount{Destination: "/rbind-ro", Source: filepath.Join(c.rootfs, "a"), Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/bind", Source: filepath.Join(c.rootfs, "a"), Options: []string{"bind"}},
		specs.Mount{Destination: "/bind-rro", Source: filepath.Join(c.rootfs, "a"), Options: []string{"rbind", "rro", "rshared"}},
		specs.Mount{Destination: "/bind-ro-rro", Source: filepath.Join(c.rootfs, "a"), Options: []string{"rbind", "ro", "rro"}},
	)
	out := c.run(`
touch /a/sub/x && echo sub-rw
touch /rbind-ro/top 2>&1 | sed 's/^/top: /'
touch /rbind-ro/sub/y && echo rbind-ro-sub-rw
touch /bind-rro/sub/y 2>&1 | sed 's/^/rro: /'
touch /bind-ro-rro/sub/y 2>&1 | sed 's/^/ro-rro: /'
cat /proc/self/mountinfo`, 0)
	for _, want := range []string{"sub-rw", "rbind-ro-sub-rw", "top: ", "rro: ", "ro-rro: "} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the output:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "Read-only file system"); n != 3 {
		t.Errorf("want 3 EROFS failures (ro's top, rro's and ro,rro's submounts), got %d:\n%s", n, out)
	}
	m := mountsIn(t, out)
	if _, ok := m["/bind/sub"]; ok {
		t.Errorf("a plain bind took the submount with it")
	}
	if e := m["/rbind-ro"]; !e.has("ro") {
		t.Errorf("/rbind-ro is %q, want ro", e.options)
	}
	if e := m["/rbind-ro/sub"]; e.has("ro") {
		t.Errorf("/rbind-ro/sub is %q, want rw (ro is not recursive)", e.options)
	}
	for _, p := range []string{"/bind-rro/sub", "/bind-ro-rro/sub"} {
		if e := m[p]; !e.has("ro") {
			t.Errorf("%s is %q, want ro", p, e.options)
		}
	}
	if e := m["/bind-rro"]; !e.shared {
		t.Errorf("/bind-rro is not shared: %+v", e)
	}
}

func TestNoDevMountsInSpec(t *testing.T) {
	c := newContainer(t)
	c.spec.Mounts = withoutDevMounts(c.spec.Mounts)
	mode := os.FileMode(0o600)
	uid, gid := uint32(1000), uint32(1001)
	c.spec.Linux.Devices = []specs.LinuxDevice{
		{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: &mode, UID: &uid, GID: &gid},
		{Path: "/dev/net/tun", Type: "c", Major: 10, Minor: 200},
		{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: &mode},
	}
	out := c.run(`stat -c '%n %A %u:%g %t:%T' /dev/fuse /dev/net/tun /dev/null /dev/ptmx; cat /proc/self/mountinfo; echo hi > /dev/null && head -c 4 /dev/zero | wc -c`, 0)
	m := mountsIn(t, out)
	for _, mp := range []string{"/dev", "/dev/pts", "/dev/shm"} {
		if _, ok := m[mp]; !ok {
			t.Errorf("no default mount on %s:\n%s", mp, out)
		}
	}
	for _, want := range []string{"/dev/fuse crw------- 1000:1001 a:e5\n", "/dev/net/tun crw-rw-rw- 0:0 a:c8\n", "/dev/null crw------- 0:0 1:3\n", "/dev/ptmx lrwxrwxrwx"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "4") {
		t.Errorf("/dev/zero:\n%s", out)
	}
}

// Without CAP_MKNOD (as in a user namespace) the nodes are bind-mounted
// from the host's /dev.
func TestDevicesWithoutMknod(t *testing.T) {
	c := newContainer(t)
	c.noMknod = true
	out := c.run(`stat -c '%n %t:%T' /dev/null /dev/zero /dev/tty; echo x > /dev/null && echo null-ok; cat /proc/self/mountinfo`, 0)
	for _, want := range []string{"/dev/null 1:3\n", "/dev/zero 1:5\n", "/dev/tty 5:0\n", "null-ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if _, ok := mountsIn(t, out)["/dev/null"]; !ok {
		t.Errorf("/dev/null is not a bind mount:\n%s", out)
	}
}

func TestReadonlyDev(t *testing.T) {
	c := newContainer(t)
	for i, m := range c.spec.Mounts {
		if m.Destination == "/dev" {
			c.spec.Mounts[i].Options = append(m.Options, "ro")
		}
	}
	out := c.run(`touch /dev/x; ls /dev/null /dev/zero && echo nodes-ok; cat /proc/self/mountinfo`, 0)
	if !strings.Contains(out, "Read-only file system") || !strings.Contains(out, "nodes-ok") {
		t.Errorf("read-only /dev:\n%s", out)
	}
}

func TestRootfsPropagation(t *testing.T) {
	for _, tc := range []struct {
		prop   string
		shared bool
	}{{"", false}, {"rprivate", false}, {"shared", true}, {"rshared", true}, {"rslave", false}} {
		t.Run("prop="+tc.prop, func(t *testing.T) {
			c := newContainer(t)
			c.spec.Linux.RootfsPropagation = tc.prop
			out := c.run(`cat /proc/self/mountinfo`, 0)
			if e := mountsIn(t, out)["/"]; e.shared != tc.shared {
				t.Errorf("/ shared=%v, want %v:\n%s", e.shared, tc.shared, out)
			}
		})
	}
}

// /proc and /sys must not be symlinks in the rootfs.
func TestProcSymlinkRefused(t *testing.T) {
	forBothAPIs(t, func(t *testing.T, legacy bool) {
		c := newContainer(t)
		c.legacy = legacy
		if err := os.Remove(filepath.Join(c.rootfs, "proc")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("dev/shm", filepath.Join(c.rootfs, "proc")); err != nil {
			t.Fatal(err)
		}
		out := c.run(`true`, setupFailed)
		if !strings.Contains(out, "goes through a symlink") {
			t.Errorf("Setup with /proc a symlink:\n%s", out)
		}
	})
}

func TestInvalidMounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    specs.Mount
		want string
	}{
		{"tmpfs-on-proc", specs.Mount{Destination: "/proc", Type: "tmpfs", Source: "tmpfs"}, "only a procfs"},
		{"bind-procfs-below-proc", specs.Mount{Destination: "/proc/cpuinfo", Source: "/proc/self/status", Options: []string{"bind"}}, "not allowed"},
		{"root", specs.Mount{Destination: "/", Type: "tmpfs", Source: "tmpfs"}, "cannot mount over /"},
		{"idmap", specs.Mount{Destination: "/x", Source: "/tmp", Options: []string{"rbind", "idmap"}}, "idmapped"},
		{"missing-source", specs.Mount{Destination: "/x", Source: "/nonexistent-source", Options: []string{"rbind"}}, "no such file"},
		{"dir-over-file", specs.Mount{Destination: "/etc/passwd", Source: "/tmp", Options: []string{"rbind"}}, "want a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newContainer(t)
			c.spec.Mounts = append(c.spec.Mounts, tc.m)
			out := c.run(`true`, setupFailed)
			if !strings.Contains(out, tc.want) {
				t.Errorf("error does not say %q:\n%s", tc.want, out)
			}
		})
	}
}

func TestCgroupMount(t *testing.T) {
	var unified unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &unified); err != nil {
		t.Fatal(err)
	}
	hostV2 := unified.Type == unix.CGROUP2_SUPER_MAGIC
	for _, tc := range []struct {
		name             string
		cgroupns, fakeV2 bool
	}{
		{"host-cgroupns", false, false},
		{"new-cgroupns", true, false},
		{"fake-v2-host-cgroupns", false, true},
		{"fake-v2-new-cgroupns", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fakeV2 && hostV2 {
				t.Skip("the host is unified: the cases above cover v2")
			}
			c := newContainer(t)
			c.fakeV2 = tc.fakeV2
			c.spec.Mounts = append(c.spec.Mounts, specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
				Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}})
			if tc.cgroupns {
				c.extra = unix.CLONE_NEWCGROUP
				c.spec.Linux.Namespaces = append(c.spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
			}
			out := c.run(`
ls /sys/fs/cgroup
procs=/sys/fs/cgroup/cgroup.procs
[ -e $procs ] || procs=/sys/fs/cgroup/pids/cgroup.procs
# A cgroup2 mount without a cgroup namespace shows the whole hierarchy
# (runc's behaviour too): the container's own cgroup is where
# /proc/self/cgroup says, not the root (which the test runner need not
# be in).
own=$(sed -n 's/^0:://p' /proc/self/cgroup)
[ -e /sys/fs/cgroup$own/cgroup.procs ] && procs=/sys/fs/cgroup$own/cgroup.procs
grep -qx 1 $procs && echo in-cgroup
touch /sys/fs/cgroup/x
cat /proc/self/mountinfo`, 0)
			if !strings.Contains(out, "in-cgroup") {
				t.Errorf("pid 1 is not in the visible cgroup:\n%s", out)
			}
			if !strings.Contains(out, "Read-only file system") {
				t.Errorf("/sys/fs/cgroup is writable:\n%s", out)
			}
			mounts := mountsIn(t, out)
			if e := mounts["/sys/fs/cgroup"]; (tc.fakeV2 || hostV2) != (e.fstype == "cgroup2") {
				t.Errorf("/sys/fs/cgroup is a %s", e.fstype)
			}
			for mp, e := range mounts {
				if strings.HasPrefix(mp, "/sys/fs/cgroup") && !e.has("ro") {
					t.Errorf("%s is %q, want ro", mp, e.options)
				}
				if tc.cgroupns && strings.HasPrefix(mp, "/sys/fs/cgroup") && e.fstype != "tmpfs" && e.root != "/" {
					t.Errorf("%s shows cgroup %s as root in a cgroup namespace", mp, e.root)
				}
			}
		})
	}
}
