package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A symlink planted where a container's log or its rotated copy goes is
// never followed: the file it points at keeps its content.
func TestLogFilesDoNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "web.log")); err != nil {
		t.Fatal(err)
	}
	if f, err := openLog(dir, "web"); err == nil {
		f.Close()
		t.Errorf("openLog followed a symlink at web.log")
	}
	// Rotation: the log is real, its .1 copy a planted link.
	if err := os.WriteFile(filepath.Join(dir, "db.log"), []byte(strings.Repeat("x", 100)), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "db.log.1")); err != nil {
		t.Fatal(err)
	}
	if err := rotate(filepath.Join(dir, "db.log"), 1); err != nil {
		t.Logf("rotate: %v", err)
	}
	// rotate removes db.log.<keep> first: with keep 1 that is the link
	// itself, so the copy is a new regular file.
	if fi, err := os.Lstat(filepath.Join(dir, "db.log.1")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("db.log.1 is not a regular file after rotation: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "db.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "db.log")); err != nil {
		t.Fatal(err)
	}
	if err := rotate(filepath.Join(dir, "db.log"), 2); err == nil {
		t.Errorf("rotate of a symlinked log succeeded")
	}
	if data, _ := os.ReadFile(victim); string(data) != "precious\n" {
		t.Errorf("the file behind a symlink changed: %q", data)
	}
}
