package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/sys"
)

// `runtime kill` and `kill --signal` read every signal the manifest
// validator accepts as the same signal, and refuse what it refuses; they
// also take 0 (kill(2)'s "is it there?") and every number the daemon's
// executor passes them (strconv.Itoa of the signal).
func TestParseSignalAgreesWithManifest(t *testing.T) {
	var forms []string
	for sig := unix.Signal(1); sig <= sys.SigRTMax; sig++ {
		name := sys.SignalName(sig)
		forms = append(forms, name, strings.ToLower(name), strings.TrimPrefix(name, "SIG"), strconv.Itoa(int(sig)))
	}
	for n := 0; n <= 30; n++ {
		forms = append(forms, fmt.Sprintf("SIGRTMAX-%d", n), fmt.Sprintf("rtmax-%d", n), fmt.Sprintf("RTMIN+%d", n))
	}
	forms = append(forms, "SIGIOT", "poll", "+15", "SIGRTMIN+31", "SIGRTMAX+1", "SIGFOO", "65", "-1", "", "SIG")
	for _, in := range forms {
		want, werr := desired.ParseSignal(in)
		got, err := parseSignal(in)
		if (err == nil) != (werr == nil) || got != want {
			t.Errorf("parseSignal(%q) = %d, %v; the manifest validator says %d, %v", in, got, err, want, werr)
		}
	}
	for _, in := range []string{"0", "00", "+0"} {
		if got, err := parseSignal(in); err != nil || got != 0 {
			t.Errorf("parseSignal(%q) = %d, %v; want 0", in, got, err)
		}
	}
}
