package sys

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// ReadFile reads what os.ReadFile reads: a regular file larger than its
// first buffer, and a kernel file whose size reads 0; a missing file is
// fs.ErrNotExist in an *os.PathError that names it.
func TestReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	want := bytes.Repeat([]byte("0123456789abcdef"), 1000)
	if err := os.WriteFile(p, want, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Errorf("ReadFile: %d bytes, %v; want %d", len(got), err, len(want))
	}
	got, err := ReadFile("/proc/self/status")
	if err != nil || !bytes.Contains(got, []byte("\nPid:\t")) || !bytes.HasSuffix(got, []byte("\n")) {
		t.Errorf("ReadFile(/proc/self/status): %q, %v", got, err)
	}
	_, err = ReadFile(p + ".missing")
	var pe *os.PathError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) || pe.Path != p+".missing" {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
}

// WriteFile replaces (O_TRUNC) or adds to (O_APPEND) an existing file and
// never creates one.
func TestWriteFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("old contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("max"), unix.O_TRUNC); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte(" 100"), unix.O_APPEND); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "max 100" {
		t.Errorf("after WriteFile: %q", got)
	}
	err := WriteFile(p+".missing", []byte("x"), unix.O_TRUNC)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile of a missing file: %v", err)
	}
	if _, serr := os.Stat(p + ".missing"); serr == nil {
		t.Error("WriteFile created a file")
	}
}
