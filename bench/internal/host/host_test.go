package host

import (
	"strings"
	"testing"
	"time"
)

// The header names every hierarchy this host mounts, on or off.
func TestFavordynmodsNamesEveryHierarchy(t *testing.T) {
	ms := cgroupMounts()
	if len(ms) == 0 {
		t.Fatal("no cgroup hierarchy mounted under /sys/fs/cgroup: reconciled needs one")
	}
	got := Favordynmods()
	for _, m := range ms {
		name := m.point[strings.LastIndex(m.point, "/")+1:]
		if m.point == "/sys/fs/cgroup" {
			name = "unified"
		}
		if !strings.Contains(got, name) {
			t.Errorf("Favordynmods() = %q, does not name %s (%s)", got, name, m.point)
		}
	}
	t.Log(Describe())
}

// The header says what a page fault costs, measured: a positive time that
// is not absurd (a first touch of a page takes well under a millisecond on
// any host this runs on).
func TestPageFaultMeasured(t *testing.T) {
	d, err := PageFault()
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 || d > time.Millisecond {
		t.Errorf("PageFault() = %v, want a positive time under 1ms", d)
	}
	if got := Describe(); !strings.Contains(got, "page fault: ") || strings.Contains(got, "not measured") {
		t.Errorf("Describe() = %q, want the measured page fault cost", got)
	}
	t.Logf("page fault: %v", d)
}
