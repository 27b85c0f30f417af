package cgroups

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func ptr[T any](v T) *T { return &v }

func TestSharesToWeight(t *testing.T) {
	for _, tc := range []struct{ shares, weight uint64 }{
		{0, 0},
		{1, 1}, // clamped to 2
		{2, 1},
		{512, 20},
		{1024, 39},
		{262144, 10000},
		{1 << 30, 10000}, // clamped to 262144
	} {
		if got := SharesToWeight(tc.shares); got != tc.weight {
			t.Errorf("SharesToWeight(%d) = %d, want %d", tc.shares, got, tc.weight)
		}
	}
}

func TestSwapV2(t *testing.T) {
	for _, tc := range []struct {
		swap, mem int64
		want      string
		ok, err   bool
	}{
		{swap: 0, mem: 0, ok: false},
		{swap: 0, mem: 1 << 20, ok: false},
		{swap: 0, mem: -1, want: "max", ok: true},
		{swap: -1, mem: 1 << 20, want: "max", ok: true},
		{swap: 3 << 20, mem: 1 << 20, want: "2097152", ok: true},
		{swap: 1 << 20, mem: 1 << 20, want: "0", ok: true},
		{swap: 1 << 20, mem: 2 << 20, err: true},
		{swap: 1 << 20, mem: 0, err: true},
		{swap: 1 << 20, mem: -1, err: true},
		{swap: -5, mem: 1 << 20, err: true},
	} {
		got, ok, err := swapV2(tc.swap, tc.mem)
		if (err != nil) != tc.err || ok != tc.ok || got != tc.want {
			t.Errorf("swapV2(%d, %d) = %q, %v, %v; want %q, %v, error %v", tc.swap, tc.mem, got, ok, err, tc.want, tc.ok, tc.err)
		}
	}
}

func TestCPUMaxV2(t *testing.T) {
	for _, tc := range []struct {
		quota  int64
		period uint64
		want   string
		ok     bool
	}{
		{0, 0, "", false},
		{50000, 100000, "50000 100000", true},
		{50000, 0, "50000", true},
		{-1, 100000, "max 100000", true},
		{0, 20000, "max 20000", true},
		{-1, 0, "max", true},
	} {
		got, ok := cpuMaxV2(tc.quota, tc.period)
		if got != tc.want || ok != tc.ok {
			t.Errorf("cpuMaxV2(%d, %d) = %q, %v; want %q, %v", tc.quota, tc.period, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPidsValue(t *testing.T) {
	for in, want := range map[int64]string{64: "64", 0: "max", -1: "max"} {
		if got := pidsValue(in); got != want {
			t.Errorf("pidsValue(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestDeviceRule(t *testing.T) {
	for _, tc := range []struct {
		in         specs.LinuxDeviceCgroup
		file, rule string
		err        bool
	}{
		{in: specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}, file: "devices.deny", rule: "a *:* rwm"},
		{in: specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rwm"}, file: "devices.allow", rule: "c 1:3 rwm"},
		{in: specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: ptr[int64](136), Access: "rw"}, file: "devices.allow", rule: "c 136:* rw"},
		{in: specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: ptr[int64](8), Minor: ptr[int64](0)}, file: "devices.allow", rule: "b 8:0 rwm"},
		{in: specs.LinuxDeviceCgroup{Allow: true, Type: "x"}, err: true},
		// Letters other than rwm are dropped, as runc drops them.
		{in: specs.LinuxDeviceCgroup{Allow: true, Type: "c", Access: "rwx"}, file: "devices.allow", rule: "c *:* rw"},
		{in: specs.LinuxDeviceCgroup{Allow: false, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](11), Access: "rwa"}, file: "devices.deny", rule: "c 1:11 rw"},
		{in: specs.LinuxDeviceCgroup{Allow: true, Type: "c", Access: "a"}},
	} {
		file, rule, err := deviceRule(tc.in)
		if (err != nil) != tc.err || file != tc.file || rule != tc.rule {
			t.Errorf("deviceRule(%+v) = %q, %q, %v; want %q, %q, error %v", tc.in, file, rule, err, tc.file, tc.rule, tc.err)
		}
	}
}

func TestCgroupPath(t *testing.T) {
	for _, tc := range []struct {
		id, path, want string
		err            bool
	}{
		{id: "web", want: "/reconciled/web"},
		{id: "web", path: "/custom/web", want: "/custom/web"},
		{id: "web", path: "custom//web/", want: "/custom/web"},
		{id: "web", path: "/", err: true},
		{id: "web", path: "/a/../../etc", err: true},
		{id: "a/b", err: true},
		{id: "..", err: true},
		{id: "", err: true},
	} {
		got, err := cgroupPath(tc.id, tc.path)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("cgroupPath(%q, %q) = %q, %v; want %q, error %v", tc.id, tc.path, got, err, tc.want, tc.err)
		}
	}
}
