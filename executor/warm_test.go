package executor

import (
	"bytes"
	"encoding/json"
	"testing"
)

// warmJSON must name only fields that exist, or the decoder it warms
// skips the types behind them.
func TestWarmJSONMatchesTheConfig(t *testing.T) {
	dec := json.NewDecoder(bytes.NewReader([]byte(warmJSON)))
	dec.DisallowUnknownFields()
	var c initConfig
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	s := c.Spec
	if s == nil || s.Process == nil || s.Process.Capabilities == nil || s.Linux == nil || s.Linux.Resources == nil ||
		s.Linux.Resources.Memory == nil || s.Linux.Resources.CPU == nil || s.Linux.Resources.Pids == nil ||
		len(s.Mounts) == 0 || s.Hooks == nil || len(s.Linux.Namespaces) == 0 {
		t.Errorf("warmJSON leaves parts of the spec out: %+v", s)
	}
}
