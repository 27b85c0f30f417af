package sys

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStamp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := StatStamp(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := StampOfInfo(fi); !ok || got != s {
		t.Errorf("StampOfInfo = %+v, %v; StatStamp = %+v", got, ok, s)
	}
	if !s.Regular() || s.Size != 1 || s.Nlink != 1 || s.Ino == 0 || s.UID != uint32(os.Getuid()) {
		t.Errorf("stamp %+v", s)
	}
	// Every kind of change shows.
	for name, change := range map[string]func() error{
		"size":  func() error { return os.WriteFile(p, []byte("ab"), 0o600) },
		"mode":  func() error { return os.Chmod(p, 0o640) },
		"link":  func() error { return os.Link(p, p+".2") },
		"inode": func() error { os.WriteFile(p+".new", []byte("ab"), 0o640); return os.Rename(p+".new", p) },
	} {
		before, _ := StatStamp(p)
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if after, _ := StatStamp(p); after == before {
			t.Errorf("%s changed, stamp did not: %+v", name, after)
		}
	}
	d, err := StatStamp(dir)
	if err != nil || d.Regular() {
		t.Errorf("dir stamp %+v, %v", d, err)
	}
	if _, err := StatStamp(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestStampRacy(t *testing.T) {
	now := time.Unix(1000, 0)
	old := now.Add(-2 * RacyWindow).UnixNano()
	for _, tc := range []struct {
		s    Stamp
		racy bool
	}{
		{Stamp{Mtime: old, Ctime: old}, false},
		{Stamp{Mtime: now.UnixNano(), Ctime: old}, true},
		{Stamp{Mtime: old, Ctime: now.Add(-RacyWindow / 2).UnixNano()}, true},
		{Stamp{Mtime: now.Add(-RacyWindow).UnixNano(), Ctime: old}, true},
		{Stamp{Mtime: now.Add(-RacyWindow - 1).UnixNano(), Ctime: old}, false},
	} {
		if got := tc.s.Racy(now); got != tc.racy {
			t.Errorf("%+v.Racy = %v, want %v", tc.s, got, tc.racy)
		}
	}
}
