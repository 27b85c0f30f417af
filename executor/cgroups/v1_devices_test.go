package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// setDevicesV1 writes every rule in order, each in one write(2), through
// one descriptor per file: in a directory of plain files the rules of a
// file follow each other (the kernel's files take each write as a rule;
// TestDeviceRulesMatchV1Kernel checks what they make of them).
func TestSetDevicesV1OneOpenPerFile(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"devices.allow", "devices.deny"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rules := []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rwm"},
		{Allow: true, Type: "c", Major: ptr[int64](136), Access: "rw"},
		{Allow: false, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](11), Access: "rw"},
	}
	if err := setDevicesV1(dir, rules); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		"devices.deny":  "a" + "a *:* rwm" + "c 1:11 rw",
		"devices.allow": "c 1:3 rwm" + "c 136:* rw",
	} {
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s: %q, want %q", f, got, want)
		}
	}
}

// A directory that is no devices cgroup: the error names the file and the
// rule, and is still "not exist".
func TestSetDevicesV1Missing(t *testing.T) {
	dir := t.TempDir()
	err := setDevicesV1(dir, []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rwm"}})
	want := `writing "a" to ` + filepath.Join(dir, "devices.deny")
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("setDevicesV1 in %s: %v, want an error that says %s and is ErrNotExist", dir, err, want)
	}
}
