package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWholeWithMode(t *testing.T) {
	for _, d := range []Durability{NoSync, SyncFile, SyncDir} {
		dir := t.TempDir()
		if err := Write(dir, "f.json", []byte("old"), 0o644, d); err != nil {
			t.Fatal(err)
		}
		if err := WriteJSON(dir, "f.json", map[string]int{"n": 1}, 0o600, d); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(dir, "f.json"))
		if err != nil || string(data) != `{"n":1}` {
			t.Errorf("durability %d: content %q, %v", d, data, err)
		}
		fi, err := os.Stat(filepath.Join(dir, "f.json"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("durability %d: mode %v, %v; want 0600", d, fi.Mode(), err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("durability %d: temp files left: %v", d, entries)
		}
	}
}

func TestWriteIntoMissingDirectoryLeavesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	if err := Write(dir, "f", []byte("x"), 0o600, SyncDir); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestFailedEncodeKeepsOldContent(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, "f", []byte("old"), 0o600, SyncFile); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(dir, "f", func() {}, 0o600, SyncFile); err == nil {
		t.Fatal("encoding a func succeeded")
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "f")); string(data) != "old" {
		t.Fatalf("content after a failed write: %q", data)
	}
}
