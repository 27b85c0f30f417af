package reconciler

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/internal/sys"
)

// stopSignalForms are spellings of every signal from 1 to 64 and of some
// near misses.
func stopSignalForms() []string {
	var out []string
	for sig := syscall.Signal(1); sig <= sys.SigRTMax; sig++ {
		name := sys.SignalName(sig)
		out = append(out, name, strings.ToLower(name), strings.TrimPrefix(name, "SIG"), strconv.Itoa(int(sig)))
	}
	for n := 0; n <= 30; n++ {
		out = append(out, fmt.Sprintf("SIGRTMAX-%d", n), fmt.Sprintf("rtmax-%d", n), fmt.Sprintf("RTMIN+%d", n))
	}
	return append(out, "SIGIOT", "poll", "+15", "SIGRTMIN++3", "SIGRTMIN+31", "SIGRTMAX+1",
		"SIGFOO", "0", "65", "-1", "", "SIG")
}

// Every stop signal the manifest validator accepts is the signal the loop
// sends, whether the loop is given the manifest's spelling or the
// canonical name the manifest parser stores; one it refuses is terminal
// here.
func TestParseSignalAgreesWithManifest(t *testing.T) {
	const manifest = "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\n" +
		"spec:\n  root: {path: /}\n  command: [/bin/true]\n  stop: {signal: %q}\n"
	for _, in := range stopSignalForms() {
		want, werr := desired.ParseSignal(in)
		got, err := parseSignal(in)
		switch {
		case werr != nil && !errors.Is(err, ErrTerminal):
			t.Errorf("parseSignal(%q) = %d, %v; the manifest refuses it (%v), want a terminal error", in, got, err, werr)
		case werr == nil && (err != nil || got != want):
			t.Errorf("parseSignal(%q) = %d, %v; the manifest validator says %d", in, got, err, want)
		}
		cs, errs := desired.Parse("web.yaml", []byte(fmt.Sprintf(manifest, in)), desired.ParseOptions{})
		if (len(errs) == 0) != (werr == nil) {
			t.Errorf("stop.signal %q: manifest errors %v, desired.ParseSignal error %v", in, errs, werr)
			continue
		}
		if len(errs) > 0 {
			continue
		}
		stored := cs[0].StopSignal
		if got, err := parseSignal(stored); err != nil || got != want {
			t.Errorf("stop.signal %q is stored as %q, which the loop reads as %d, %v; want %d", in, stored, got, err, want)
		}
	}
}
