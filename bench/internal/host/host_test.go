package host

import (
	"strings"
	"testing"
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
