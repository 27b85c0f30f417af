package desired

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"reconciled.dev/reconciled/internal/sys"
)

// spec.stop.signal and an image's StopSignal are read by sys.ParseSignal
// and stored as sys.SignalName, whatever the spelling: the value the loop
// parses again with the same parser.
func TestStopSignalIsSysParseSignal(t *testing.T) {
	var forms []string
	for sig := syscall.Signal(1); sig <= sys.SigRTMax; sig++ {
		name := sys.SignalName(sig)
		forms = append(forms, name, strings.ToLower(name), strings.TrimPrefix(name, "SIG"), strconv.Itoa(int(sig)))
	}
	forms = append(forms, "SIGRTMAX-1", "RTMIN+3", "rtmax", "SIGIOT", "+15", "SIGRTMIN+31", "SIGFOO", "0", "65")
	for _, in := range forms {
		want, werr := sys.ParseSignal(in)
		if got, err := ParseSignal(in); got != want || (err == nil) != (werr == nil) {
			t.Errorf("ParseSignal(%q) = %d, %v; sys.ParseSignal says %d, %v", in, got, err, want, werr)
		}
		cs, errs := Parse("web.yaml", []byte(base+fmt.Sprintf("  stop: {signal: %q}\n", in)), ParseOptions{})
		if werr != nil {
			if len(errs) == 0 {
				t.Errorf("stop.signal %q accepted; sys.ParseSignal refuses it: %v", in, werr)
			}
			continue
		}
		if len(errs) > 0 || len(cs) != 1 {
			t.Errorf("stop.signal %q: %v", in, Errors(errs))
			continue
		}
		if got := cs[0].StopSignal; got != sys.SignalName(want) {
			t.Errorf("stop.signal %q stored as %q, want %q", in, got, sys.SignalName(want))
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"SIGRTMIN+3", "SIGRTMIN+3"}, {"RTMAX-1", "SIGRTMIN+29"}, {"40", "SIGRTMIN+6"}, {"iot", "SIGABRT"},
	} {
		if c := parseOne(t, base+fmt.Sprintf("  stop: {signal: %q}\n", tt.in)); c.StopSignal != tt.want {
			t.Errorf("stop.signal %q stored as %q, want %q", tt.in, c.StopSignal, tt.want)
		}
	}
}
