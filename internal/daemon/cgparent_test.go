package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCgroupParent(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	if p := defaultCgroupParent(DefaultState); p.Cgroupfs != "/reconciled" || p.Systemd != "reconciled.slice" {
		t.Errorf("default state directory: %+v, want today's /reconciled and reconciled.slice", p)
	}
	dir := t.TempDir()
	layout := Layout(dir)
	p, err := loadCgroupParent(layout, "", log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Cgroupfs, "/reconciled-") || len(p.Cgroupfs) != len("/reconciled-")+12 ||
		p.Systemd != strings.TrimPrefix(p.Cgroupfs, "/")+".slice" {
		t.Errorf("derived parent %+v", p)
	}
	if got := p.Path("cgroupfs", "web"); got != p.Cgroupfs+"/web" {
		t.Errorf("cgroupfs path %q", got)
	}
	if got := p.Path("systemd", "web"); got != p.Systemd+":"+strings.TrimSuffix(p.Systemd, ".slice")+":web" {
		t.Errorf("systemd path %q", got)
	}
	other, _ := loadCgroupParent(Layout(t.TempDir()), "", log)
	if other == p {
		t.Errorf("two state directories share the parent %+v", p)
	}
	// Recorded: a flag changes it, and the record keeps the change.
	if _, err := os.Stat(layout.CgroupParent()); err != nil {
		t.Fatal(err)
	}
	q, err := loadCgroupParent(layout, "/staging/apps", log)
	if err != nil || q.Cgroupfs != "/staging/apps" || q.Systemd != "staging-apps.slice" {
		t.Fatalf("--cgroup-parent /staging/apps: %+v, %v", q, err)
	}
	if again, err := loadCgroupParent(layout, "", log); err != nil || again != q {
		t.Errorf("after a restart: %+v, %v; want the recorded %+v", again, err, q)
	}
	if s, err := loadCgroupParent(layout, "edge.slice", log); err != nil || s.Systemd != "edge.slice" || s.Cgroupfs != "/edge.slice" {
		t.Errorf("--cgroup-parent edge.slice: %+v, %v", s, err)
	}
	for _, bad := range []string{"/", "../x", "a/../../b"} {
		if _, err := loadCgroupParent(layout, bad, log); err == nil {
			t.Errorf("--cgroup-parent %q accepted", bad)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup-parent.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCgroupParent(layout, "", log); err == nil || !strings.Contains(err.Error(), "cgroup-parent.json") {
		t.Errorf("a broken record: %v", err)
	}
}
