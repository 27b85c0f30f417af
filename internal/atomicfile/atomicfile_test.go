package atomicfile

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestWriteReplacesWholeWithMode(t *testing.T) {
	for _, d := range []Durability{NoSync, SyncDir} {
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
	if err := Write(dir, "f", []byte("old"), 0o600, SyncDir); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(dir, "f", func() {}, 0o600, SyncDir); err == nil {
		t.Fatal("encoding a func succeeded")
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "f")); string(data) != "old" {
		t.Fatalf("content after a failed write: %q", data)
	}
}

func TestFailedRenameLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory cannot be replaced by a file.
	if err := os.MkdirAll(filepath.Join(dir, "f", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := Write(dir, "f", []byte("x"), 0o600, SyncDir)
	if err == nil {
		t.Fatal("replacing a non-empty directory with a file succeeded")
	}
	if !strings.Contains(err.Error(), "rename") {
		t.Errorf("error %q does not say the rename failed", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "f" {
		t.Errorf("entries left: %v, want only f", entries)
	}
}

func TestConcurrentWritersLeaveOneWholeFile(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			data := []byte(strings.Repeat(strconv.Itoa(i%10), 4096))
			for range 20 {
				if err := Write(dir, "f", data, 0o644, NoSync); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	data, err := os.ReadFile(filepath.Join(dir, "f"))
	if err != nil || len(data) != 4096 || strings.Count(string(data), string(data[:1])) != 4096 {
		t.Fatalf("content is not one writer's whole data: %d bytes, %v", len(data), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temp files left: %v", entries)
	}
}
