package proc

import (
	"os"
	"reflect"
	"testing"
)

func TestParseCgroups(t *testing.T) {
	got := ParseCgroups("12:cpu,cpuacct:/a\n1:name=systemd:/b:c\n0::/c\n\ngarbage\n")
	want := map[string]string{"cpu,cpuacct": "/a", "name=systemd": "/b:c", "": "/c"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestCgroupsSelf(t *testing.T) {
	self, err := Cgroups(0)
	if err != nil || len(self) == 0 {
		t.Fatalf("Cgroups(0) = %v, %v", self, err)
	}
	byPid, err := Cgroups(os.Getpid())
	if err != nil || !reflect.DeepEqual(self, byPid) {
		t.Errorf("Cgroups(self pid) = %v, %v; Cgroups(0) = %v", byPid, err, self)
	}
}
