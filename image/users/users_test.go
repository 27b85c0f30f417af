package users

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func layerWith(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if content == "WHITEOUT" {
			if err := unix.Mknod(full, unix.S_IFCHR, 0); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const passwd = "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1234:2345:app:/home/app:/bin/sh\n"
const group = "root:x:0:\nappgrp:x:2345:\nstaff:x:50:app,other\naudio:x:29:other\nvideo:x:44: app \n"

func TestLookup(t *testing.T) {
	base := layerWith(t, map[string]string{"etc/passwd": passwd, "etc/group": group})
	tests := []struct {
		spec string
		want User
	}{
		{"", User{}},
		{"app", User{1234, 2345, []uint32{50, 44}}},
		{"1234", User{1234, 2345, []uint32{50, 44}}},
		{"app:staff", User{1234, 50, []uint32{44}}},
		{"app:7", User{1234, 7, []uint32{50, 44}}},
		{"4321", User{4321, 0, nil}},
		{"4321:44", User{4321, 44, nil}},
		{"root", User{0, 0, nil}},
	}
	for _, tt := range tests {
		got, err := Lookup([]string{base}, tt.spec)
		if err != nil {
			t.Errorf("Lookup(%q): %v", tt.spec, err)
			continue
		}
		if got.UID != tt.want.UID || got.GID != tt.want.GID || !slices.Equal(got.Groups, tt.want.Groups) {
			t.Errorf("Lookup(%q) = %+v, want %+v", tt.spec, got, tt.want)
		}
	}
	for _, spec := range []string{"nobody", "app:nogroup"} {
		if _, err := Lookup([]string{base}, spec); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%q): err = %v, want ErrNotFound", spec, err)
		}
	}
}

func TestLookupLayers(t *testing.T) {
	base := layerWith(t, map[string]string{"etc/passwd": passwd, "etc/group": group})
	upper := layerWith(t, map[string]string{"etc/passwd": "web:x:80:80::/:/bin/sh\n"})
	if u, err := Lookup([]string{base, upper}, "web"); err != nil || u.UID != 80 {
		t.Errorf("the upper layer's /etc/passwd wins: %+v, %v", u, err)
	}
	if _, err := Lookup([]string{base, upper}, "app"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a lower layer's entry must not show through a replaced file: %v", err)
	}
	gone := layerWith(t, map[string]string{"etc/passwd": "WHITEOUT"})
	if _, err := Lookup([]string{base, gone}, "app"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a whiteout hides /etc/passwd: %v", err)
	}
	opaque := layerWith(t, map[string]string{"etc/hostname": "x"})
	if err := unix.Setxattr(filepath.Join(opaque, "etc"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup([]string{base, opaque}, "app"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an opaque /etc hides the lower /etc/passwd: %v", err)
	}
	// A symlinked /etc/passwd pointing at the host's is read inside the
	// layer only.
	evil := t.TempDir()
	os.MkdirAll(filepath.Join(evil, "etc"), 0o755)
	os.Symlink("/proc/self/root/etc/passwd", filepath.Join(evil, "etc", "passwd"))
	if _, err := Lookup([]string{evil}, "root"); err == nil {
		t.Errorf("a symlink out of the layer must not be followed to the host")
	}
}
