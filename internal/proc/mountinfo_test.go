package proc

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	long := strings.Repeat("/var/lib/reconciled/images/layers/sha256/0123456789abcdef0123456789abcdef/diff:", 2000)
	text := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
27 26 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:9 master:2 - cgroup cgroup rw,xattr,name=systemd
99 22 0:27 /sub\040dir /mnt/a\040b\011c\134d\012e rw,relatime - tmpfs my\040src rw
100 22 0:28 / /mnt/odd\0 rw - tmpfs none rw
101 22 0:29 / /mnt/\777 ro - cgroup2 cgroup2
102 22 0:30 / /ovl rw - overlay overlay rw,lowerdir=` + long + `
`
	ms, err := ParseMountinfo(strings.NewReader(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{ID: 22, Parent: 1, Major: 8, Minor: 1, Root: "/", Mountpoint: "/", Options: "rw,relatime",
			Optional: []string{"shared:1"}, FSType: "ext4", Source: "/dev/sda1", VFSOptions: "rw"},
		{ID: 27, Parent: 26, Major: 0, Minor: 25, Root: "/", Mountpoint: "/sys/fs/cgroup/systemd", Options: "rw,nosuid",
			Optional: []string{"shared:9", "master:2"}, FSType: "cgroup", Source: "cgroup", VFSOptions: "rw,xattr,name=systemd"},
		{ID: 99, Parent: 22, Major: 0, Minor: 27, Root: "/sub dir", Mountpoint: "/mnt/a b\tc\\d\ne", Options: "rw,relatime",
			FSType: "tmpfs", Source: "my src", VFSOptions: "rw"},
		{ID: 100, Parent: 22, Major: 0, Minor: 28, Root: "/", Mountpoint: `/mnt/odd\0`, Options: "rw",
			FSType: "tmpfs", Source: "none", VFSOptions: "rw"},
		{ID: 101, Parent: 22, Major: 0, Minor: 29, Root: "/", Mountpoint: `/mnt/\777`, Options: "ro",
			FSType: "cgroup2", Source: "cgroup2"},
		{ID: 102, Parent: 22, Major: 0, Minor: 30, Root: "/", Mountpoint: "/ovl", Options: "rw",
			FSType: "overlay", Source: "overlay", VFSOptions: "rw,lowerdir=" + long},
	}
	if !reflect.DeepEqual(ms, want) {
		t.Errorf("got\n%+v\nwant\n%+v", ms, want)
	}
	if !ms[0].Shared() || !ms[1].Shared() || ms[2].Shared() {
		t.Error("Shared wrong")
	}

	only, err := ParseMountinfo(strings.NewReader(text), func(m *Mount) bool { return m.FSType == "cgroup" })
	if err != nil || len(only) != 1 || only[0].ID != 27 {
		t.Errorf("filtered: %+v, %v", only, err)
	}
	// No final newline.
	if ms, err := ParseMountinfo(strings.NewReader("1 0 0:1 / / rw - rootfs rootfs rw"), nil); err != nil || len(ms) != 1 {
		t.Errorf("no final newline: %+v, %v", ms, err)
	}
}

func TestParseMountinfoMalformed(t *testing.T) {
	for _, line := range []string{
		"22 1 8:1 / / rw ext4 /dev/sda1 rw",   // no separator
		"22 1 8:1 / - rw ext4 /dev/sda1 rw",   // '-' before the optional fields
		"22 1 8:1 / / rw shared:1 - ext4",     // no source
		"x 1 8:1 / / rw - ext4 /dev/sda1 rw",  // mount ID
		"22 1 8-1 / / rw - ext4 /dev/sda1 rw", // major:minor
	} {
		text := "1 0 0:1 / / rw - rootfs rootfs rw\n" + line + "\n"
		_, err := ParseMountinfo(strings.NewReader(text), nil)
		if err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: err %v, want one naming line 2", line, err)
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`: "/a b", `/plain`: "/plain", `/tab\011x\134`: "/tab\tx\\", `/end\04`: `/end\04`,
		`\400`: `\400`, `\0401`: " 1", `a\`: `a\`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountsSelf(t *testing.T) {
	ms, err := Mounts(func(m *Mount) bool { return m.Mountpoint == "/proc" })
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].FSType != "proc" {
		t.Errorf("Mounts(/proc) = %+v", ms)
	}
}
