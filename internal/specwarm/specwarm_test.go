package specwarm

import (
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

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
