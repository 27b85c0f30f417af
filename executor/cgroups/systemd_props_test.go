package cgroups

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestUnitNames(t *testing.T) {
	for _, c := range []struct {
		id, path     string
		slice, scope string
		err          string
	}{
		{id: "web", slice: "reconciled.slice", scope: "reconciled-web.scope"},
		{id: "web", path: "system.slice:docker:abc", slice: "system.slice", scope: "docker-abc.scope"},
		{id: "web", path: ":reconciled:web", slice: "reconciled.slice", scope: "reconciled-web.scope"},
		{id: "web", path: "a-b.slice::web.scope", slice: "a-b.slice", scope: "web.scope"},
		{id: "we/b", err: "cannot name a systemd unit"},
		{id: "", err: "cannot name a systemd unit"},
		{id: "web", path: "/reconciled/web", err: `wants "slice:prefix:name"`},
		{id: "web", path: "system.slice:x:y.slice", err: "not in a slice"},
		{id: "web", path: "system:x:y", err: "invalid slice name"},
		{id: "web", path: "a--b.slice:x:y", err: "may not start, end or double"},
		{id: "web", path: "system.slice:x:", err: "name: empty"},
		{id: "web", path: "system.slice:x y:z", err: "prefix: character"},
	} {
		slice, scope, err := unitNames(c.id, c.path)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("unitNames(%q, %q) error = %v, want %q", c.id, c.path, err, c.err)
			}
			continue
		}
		if err != nil || slice != c.slice || scope != c.scope {
			t.Errorf("unitNames(%q, %q) = %q, %q, %v; want %q, %q", c.id, c.path, slice, scope, err, c.slice, c.scope)
		}
	}
}

func TestExpandSlice(t *testing.T) {
	for in, want := range map[string]string{
		"-.slice":          "",
		"reconciled.slice": "/reconciled.slice",
		"a-b-c.slice":      "/a.slice/a-b.slice/a-b-c.slice",
	} {
		if got, err := expandSlice(in); err != nil || got != want {
			t.Errorf("expandSlice(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ".slice", "a/b.slice", "a.scope", "-a.slice", "a-.slice"} {
		if _, err := expandSlice(bad); err == nil {
			t.Errorf("expandSlice(%q): no error", bad)
		}
	}
}

// propMap flattens properties for comparison.
func propMap(props []sddbus.Property) map[string]any {
	m := map[string]any{}
	for _, p := range props {
		m[p.Name] = p.Value.Value()
	}
	return m
}

func TestResourceProps(t *testing.T) {
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(100 << 20), Swap: i64(150 << 20), Reservation: i64(50 << 20)},
		CPU:    &specs.LinuxCPU{Shares: u64(1024), Quota: i64(12345), Period: u64(100000)},
		Pids:   &specs.LinuxPids{Limit: i64(-1)},
	}
	v1, err := resourceProps(r, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"MemoryLimit": uint64(100 << 20), "CPUShares": uint64(1024),
		"CPUQuotaPeriodUSec": uint64(100000), "CPUQuotaPerSecUSec": uint64(123450),
		"TasksMax": infinity,
	}
	if got := propMap(v1); !reflect.DeepEqual(got, want) {
		t.Errorf("v1 props = %v\nwant %v", got, want)
	}
	v2, err := resourceProps(r, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]any{
		"MemoryMax": uint64(100 << 20), "MemorySwapMax": uint64(50 << 20), "MemoryLow": uint64(50 << 20),
		"CPUWeight": SharesToWeight(1024), "CPUQuotaPeriodUSec": uint64(100000), "CPUQuotaPerSecUSec": uint64(123450),
		"TasksMax": infinity,
	}
	if got := propMap(v2); !reflect.DeepEqual(got, want) {
		t.Errorf("v2 props = %v\nwant %v", got, want)
	}

	// Unlimited, no period given, a quota that does not divide evenly.
	r = &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(-1)},
		CPU:    &specs.LinuxCPU{Quota: i64(-1)},
	}
	got, err := resourceProps(r, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]any{"MemoryMax": infinity, "MemorySwapMax": infinity, "CPUQuotaPerSecUSec": infinity}
	if m := propMap(got); !reflect.DeepEqual(m, want) {
		t.Errorf("unlimited v2 props = %v\nwant %v", m, want)
	}
	got, _ = resourceProps(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(1), Period: u64(3)}}, false, nil)
	if m := propMap(got); m["CPUQuotaPerSecUSec"] != uint64(333334) {
		t.Errorf("quota 1/3: CPUQuotaPerSecUSec = %v, want 333334 (rounded up)", m["CPUQuotaPerSecUSec"])
	}
	if _, err := resourceProps(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100), Swap: i64(50)}}, true, nil); err == nil {
		t.Error("swap below memory on v2: no error")
	}
	if got, _ := resourceProps(nil, false, nil); got != nil {
		t.Errorf("nil resources: %v", got)
	}
}

const fakeProcDevices = `Character devices:
  1 mem
  5 /dev/tty
136 pts

Block devices:
  8 sd
`

func TestDeviceProps(t *testing.T) {
	open := func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(fakeProcDevices)), nil }
	dev := func(allow bool, typ string, major, minor *int64, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: major, Minor: minor, Access: access}
	}
	denyAll := dev(false, "", nil, nil, "rwm")
	for _, c := range []struct {
		name   string
		rules  []specs.LinuxDeviceCgroup
		policy string
		allow  []deviceAllow
		err    string
	}{
		{name: "deny all", rules: []specs.LinuxDeviceCgroup{denyAll}, policy: "strict", allow: []deviceAllow{}},
		{name: "allow all", rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "a", nil, nil, "")}, policy: "auto", allow: []deviceAllow{}},
		{name: "runc-like list", rules: []specs.LinuxDeviceCgroup{
			denyAll,
			dev(true, "c", i64(1), i64(3), "rwm"),
			dev(true, "c", i64(136), nil, "rw"),
			dev(true, "c", nil, nil, "m"),
			dev(true, "b", i64(8), i64(0), "r"),
			dev(true, "c", i64(1), i64(3), "r"), // merged into the first
		}, policy: "strict", allow: []deviceAllow{
			{"/dev/char/1:3", "rwm"}, {"char-pts", "rw"}, {"char-*", "m"}, {"/dev/block/8:0", "r"},
		}},
		// Type "a" resets, whatever its numbers say (the kernel's v1 meaning).
		{name: "type a resets", rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", i64(1), i64(3), "rwm"), dev(true, "a", i64(8), i64(0), "r")}, policy: "auto", allow: []deviceAllow{}},
		// Rules start from deny-all on every driver, as with runc.
		{name: "rules start from deny-all", rules: []specs.LinuxDeviceCgroup{dev(true, "c", i64(1), i64(3), "rwm")}, policy: "strict", allow: []deviceAllow{{"/dev/char/1:3", "rwm"}}},
		{name: "hole in a wildcard", rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", i64(1), nil, "rwm"), dev(false, "c", i64(1), i64(3), "w")}, err: "devices[2]: cannot deny c 1:3 w: an earlier rule allows c 1:* rwm"},
		{name: "any major one minor", rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", nil, i64(3), "r")}, err: "any major, one minor"},
		{name: "deny after allow", rules: []specs.LinuxDeviceCgroup{
			denyAll, dev(true, "c", i64(1), i64(3), "rwm"), dev(true, "c", i64(1), i64(5), "rw"),
			dev(false, "c", i64(1), i64(3), "w"), dev(false, "c", i64(1), i64(5), "rw"),
		}, policy: "strict", allow: []deviceAllow{{"/dev/char/1:3", "rm"}}},
		{name: "allow under allow-all is a no-op", rules: []specs.LinuxDeviceCgroup{dev(true, "a", nil, nil, ""), dev(true, "c", i64(1), i64(3), "rwm")}, policy: "auto", allow: []deviceAllow{}},
		{name: "deny one under allow-all", rules: []specs.LinuxDeviceCgroup{dev(true, "a", nil, nil, ""), dev(false, "c", i64(1), i64(3), "rwm")}, err: "cannot be expressed"},
		{name: "unknown major", rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", i64(250), nil, "rwm")}, err: "no device group in /proc/devices has major 250"},
		{name: "bad type", rules: []specs.LinuxDeviceCgroup{dev(true, "x", nil, nil, "")}, err: "devices[0]: invalid type"},
		// Letters other than rwm are ignored, as runc ignores them.
		{name: "unknown access letters", rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", i64(1), i64(3), "rwx"), dev(false, "c", i64(1), i64(3), "wa"), dev(true, "c", i64(1), i64(5), "a")}, policy: "strict", allow: []deviceAllow{{"/dev/char/1:3", "r"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			props, err := deviceProps(c.rules, open)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := propMap(props)
			if m["DevicePolicy"] != c.policy || !reflect.DeepEqual(m["DeviceAllow"], c.allow) {
				t.Errorf("DevicePolicy=%v DeviceAllow=%v; want %s %v", m["DevicePolicy"], m["DeviceAllow"], c.policy, c.allow)
			}
		})
	}
	// /proc/devices is read only when a wildcard minor needs it.
	failing := func() (io.ReadCloser, error) { return nil, fmt.Errorf("no /proc") }
	if _, err := deviceProps([]specs.LinuxDeviceCgroup{denyAll, dev(true, "c", i64(1), i64(3), "rwm")}, failing); err != nil {
		t.Errorf("read /proc/devices without need: %v", err)
	}
}
