package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// On v2 a blkio weight goes to io.weight converted (or to io.bfq.weight as
// given), throttles to io.max; a realtime period is refused; without any
// weight file the weight is an error, not dropped.
func TestSetV2BlockIOAndRealtime(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"io.weight", "io.max"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w := uint16(500)
	r := &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
		Weight:                &w,
		ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{Rate: 1048576}},
	}}
	r.BlockIO.ThrottleReadBpsDevice[0].Major, r.BlockIO.ThrottleReadBpsDevice[0].Minor = 8, 0
	if err := setV2(dir, r); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "io.weight")); string(got) != "4950" {
		t.Errorf("io.weight for blkio weight 500: %q, want 4950", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "io.max")); string(got) != "8:0 rbps=1048576" {
		t.Errorf("io.max: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "io.bfq.weight"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := setV2(dir, &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: &w}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "io.bfq.weight")); string(got) != "500" {
		t.Errorf("io.bfq.weight: %q, want 500", got)
	}
	period := uint64(1000000)
	if err := setV2(dir, &specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimePeriod: &period}}); err == nil || !strings.Contains(err.Error(), "realtime") {
		t.Errorf("realtime period on v2: %v, want refused", err)
	}
	empty := t.TempDir()
	if err := setV2(empty, &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: &w}}); err == nil || !strings.Contains(err.Error(), "blkio weight") {
		t.Errorf("weight without a weight file: %v, want an error", err)
	}
	lw := uint16(10)
	if got := Unsupported(&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{LeafWeight: &lw}}); got != "linux.resources.blockIO.leafWeight" {
		t.Errorf("Unsupported(leafWeight) = %q", got)
	}
}
