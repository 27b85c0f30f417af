package executor

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"reconciled.dev/reconciled/internal/specwarm"
)

// TestEntryStrings: the strings shippedEntry (entry_amd64.s) matches
// before the Go runtime runs are this package's and the CLI's: the stage
// variable, reconciled-runc, the runtime command, the trailer's magic.
func TestEntryStrings(t *testing.T) {
	src, err := os.ReadFile("entry_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]string{}
	re := regexp.MustCompile(`(?m)^DATA ·(\w+)\+(\d+)\(SB\)/(\d+), \$"(.*)"$`)
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		s, err := strconv.Unquote(`"` + m[4] + `"`)
		if err != nil {
			t.Fatalf("%s: %v", m[0], err)
		}
		if off, _ := strconv.Atoi(m[2]); off != len(data[m[1]]) {
			t.Fatalf("%s: offset %d, want %d", m[0], off, len(data[m[1]]))
		}
		data[m[1]] += s
	}
	for sym, want := range map[string]string{
		"stageEnvPrefix":  stageEnv + "=",
		"runcName":        specwarm.RuncName + "\x00",
		"runtimeArg":      "runtime\x00",
		"stageMagicBytes": stageMagic,
		"procSelfExe":     "/proc/self/exe\x00",
	} {
		if got := strings.TrimRight(data[sym], "\x00"); got != strings.TrimRight(want, "\x00") || !strings.HasPrefix(data[sym], want) {
			t.Errorf("entry_amd64.s %s = %q, want %q", sym, data[sym], want)
		}
	}
	// The prefix is compared over its length: 18 bytes.
	if n := len(stageEnv + "="); n != 18 || !strings.Contains(string(src), "MOVQ\t$18, CX") {
		t.Errorf("the stage variable's prefix is %d bytes; entry_amd64.s compares 18", n)
	}
}
