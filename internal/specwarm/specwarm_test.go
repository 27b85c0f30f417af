package specwarm

import (
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestWanted(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"/usr/bin/reconciled", "runtime", "--root", "/run/r", "create", "--bundle", "b", "c1"}, true},
		{[]string{"reconciled", "runtime", "run", "-d", "c1"}, true},
		{[]string{"/usr/local/bin/reconciled-runc", "--root", "/run/r", "create", "c1"}, true},
		{[]string{"reconciled", "runtime", "start", "c1"}, false},
		{[]string{"reconciled", "runtime", "delete", "-f", "c1"}, false},
		{[]string{"reconciled", "run", "--manifests", "m"}, false}, // the daemon
		{[]string{"reconciled", "validate", "create"}, false},
		{[]string{"reconciled-init"}, false},
		{nil, false},
	} {
		if got := wanted(c.args); got != c.want {
			t.Errorf("wanted(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

// JSON decodes into a spec that has each part it is there to warm: a
// field misspelt in it would be skipped silently and warm nothing.
func TestJSONCoversTheSpec(t *testing.T) {
	var s specs.Spec
	dec := json.NewDecoder(strings.NewReader(JSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	l := s.Linux
	if s.Process == nil || s.Process.Capabilities == nil || len(s.Process.Rlimits) == 0 || s.Root == nil ||
		len(s.Mounts) == 0 || s.Hooks == nil || l == nil || l.Resources == nil || l.Resources.Memory == nil ||
		l.Resources.CPU == nil || l.Resources.Pids == nil || len(l.Resources.Devices) == 0 || len(l.Namespaces) == 0 {
		t.Errorf("JSON leaves parts of the spec out: %+v", s)
	}
}
