//go:build linux

package sys

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSignal(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want unix.Signal // 0: an error
	}{
		{"SIGTERM", unix.SIGTERM}, {"TERM", unix.SIGTERM}, {"term", unix.SIGTERM},
		{"sigterm", unix.SIGTERM}, {"SigTerm", unix.SIGTERM}, {"15", unix.SIGTERM},
		{"+15", unix.SIGTERM}, {"015", unix.SIGTERM},
		{"KILL", unix.SIGKILL}, {"9", unix.SIGKILL}, {"1", unix.SIGHUP},
		{"SIGIOT", unix.SIGABRT}, {"iot", unix.SIGABRT}, {"SIGPOLL", unix.SIGIO},
		{"SIGSTKFLT", 16}, {"SIGPWR", unix.SIGPWR}, {"SIGSYS", unix.SIGSYS},
		{"SIGRTMIN", 34}, {"RTMIN", 34}, {"rtmin", 34}, {"SIGRTMIN+0", 34},
		{"SIGRTMIN+3", 37}, {"RTMIN+3", 37}, {"sigrtmin+3", 37}, {"SIGRTMIN+03", 37},
		{"SIGRTMIN+30", 64}, {"SIGRTMAX", 64}, {"RTMAX", 64}, {"SIGRTMAX-1", 63},
		{"rtmax-1", 63}, {"SIGRTMAX-30", 34}, {"SIGRTMAX-0", 64},
		{"32", 32}, {"33", 33}, {"34", 34}, {"40", 40}, {"64", 64},
		// Accepted by desired's first parser (strconv.Atoi read the offset), so
		// kept: a manifest that validated once still validates.
		{"SIGRTMIN++3", 37}, {"SIGRTMAX-+1", 63}, {"SIGRTMIN+-0", 34},

		{"", 0}, {"SIG", 0}, {"0", 0}, {"-1", 0}, {"65", 0}, {"99", 0},
		{"SIGFOO", 0}, {"SIGSIGTERM", 0}, {"SIG TERM", 0}, {" TERM", 0}, {"TERM ", 0},
		{"SIGRTMIN+31", 0}, {"SIGRTMIN-1", 0}, {"SIGRTMIN+", 0}, {"SIGRTMIN+x", 0},
		{"SIGRTMIN3", 0}, {"SIGRTMAX+1", 0}, {"SIGRTMAX-31", 0}, {"SIGRTMAX-", 0},
		{"SIGRTMIN+-1", 0}, {"SIGRTMAX--1", 0}, {"RTMIN+ 3", 0}, {"15.0", 0}, {"0x0f", 0},
	} {
		got, err := ParseSignal(tt.in)
		if tt.want == 0 {
			if err == nil || !errors.Is(err, ErrUnknownSignal) {
				t.Errorf("ParseSignal(%q) = %d, %v; want an ErrUnknownSignal", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestSignalName(t *testing.T) {
	for sig, want := range map[unix.Signal]string{
		unix.SIGTERM: "SIGTERM", unix.SIGABRT: "SIGABRT", unix.SIGIO: "SIGIO",
		32: "32", 33: "33", 34: "SIGRTMIN", 37: "SIGRTMIN+3", 40: "SIGRTMIN+6",
		63: "SIGRTMIN+29", 64: "SIGRTMIN+30", 0: "0", 65: "65",
	} {
		if got := SignalName(sig); got != want {
			t.Errorf("SignalName(%d) = %q, want %q", sig, got, want)
		}
	}
	// Every signal's canonical name reads back as it, and x/sys agrees on
	// the numbers of the names both know.
	for sig := unix.Signal(1); sig <= SigRTMax; sig++ {
		name := SignalName(sig)
		if got, err := ParseSignal(name); err != nil || got != sig {
			t.Errorf("ParseSignal(SignalName(%d) = %q) = %d, %v", sig, name, got, err)
		}
		if xname := unix.SignalName(sig); xname != "" && xname != name {
			t.Errorf("signal %d: x/sys calls it %s, we %s", sig, xname, name)
		}
	}
	for _, e := range signalNames {
		if n := unix.SignalNum(e.name); n != 0 && n != e.sig {
			t.Errorf("%s: x/sys says %d, we %d", e.name, n, e.sig)
		}
	}
}

// legacyParseSignal is desired.ParseSignal as it was before the parser
// moved here: every input it accepted must still be accepted, as the same
// signal (manifests on disk were validated by it).
func legacyParseSignal(s string) (syscall.Signal, error) {
	const sigRTMin, sigRTMax = 34, 64
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > sigRTMax {
			return 0, fmt.Errorf("signal number %d out of range 1-%d", n, sigRTMax)
		}
		return syscall.Signal(n), nil
	}
	u := strings.ToUpper(s)
	if !strings.HasPrefix(u, "SIG") {
		u = "SIG" + u
	}
	for _, e := range signalNames {
		if e.name == u {
			return e.sig, nil
		}
	}
	for _, rt := range []struct {
		prefix string
		base   int
		sign   int
	}{{"SIGRTMIN", sigRTMin, 1}, {"SIGRTMAX", sigRTMax, -1}} {
		if !strings.HasPrefix(u, rt.prefix) {
			continue
		}
		rest := u[len(rt.prefix):]
		off := 0
		if rest != "" {
			if rest[0] != '+' && rest[0] != '-' {
				break
			}
			n, err := strconv.Atoi(rest[1:])
			if err != nil || rest[1:] == "" || (rest[0] == '+') != (rt.sign > 0) {
				break
			}
			off = n * rt.sign
		}
		if n := rt.base + off; n >= sigRTMin && n <= sigRTMax {
			return syscall.Signal(n), nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// signalForms are spellings of every signal and near misses.
func signalForms() []string {
	var out []string
	add := func(s string) {
		out = append(out, s, strings.ToLower(s), strings.TrimPrefix(s, "SIG"), strings.ToLower(strings.TrimPrefix(s, "SIG")))
	}
	for _, e := range signalNames {
		add(e.name)
	}
	for n := -2; n <= 70; n++ {
		out = append(out, strconv.Itoa(n), "+"+strconv.Itoa(n), fmt.Sprintf("%03d", n))
		for _, rt := range []string{"SIGRTMIN", "SIGRTMAX"} {
			for _, op := range []string{"+", "-", "++", "+-", "-+", "--", ""} {
				add(fmt.Sprintf("%s%s%d", rt, op, n))
				add(fmt.Sprintf("%s%s%02d", rt, op, n))
			}
		}
	}
	add("SIGRTMIN")
	add("SIGRTMAX")
	return append(out, "", "SIG", "SIGRTMIN+", "SIGRTMAX-", "SIGSIGTERM", " TERM", "SIGRTMIN+ 3", "ſigterm", "sıgkill")
}

func TestParseSignalKeepsLegacyForms(t *testing.T) {
	accepted := 0
	for _, in := range signalForms() {
		checkLegacy(t, in)
		if _, err := legacyParseSignal(in); err == nil {
			accepted++
		}
	}
	if accepted < 500 {
		t.Errorf("only %d forms accepted: the corpus lost its coverage", accepted)
	}
}

func FuzzParseSignalLegacy(f *testing.F) {
	for _, in := range []string{"TERM", "SIGRTMIN+3", "RTMAX-1", "40", "+15", "sigrtmin++3"} {
		f.Add(in)
	}
	f.Fuzz(checkLegacy)
}

// checkLegacy says whether ParseSignal and legacyParseSignal agree on in.
func checkLegacy(t *testing.T, in string) {
	old, oerr := legacyParseSignal(in)
	got, err := ParseSignal(in)
	if (oerr == nil) != (err == nil) || got != old {
		t.Errorf("ParseSignal(%q) = %d, %v; the first parser said %d, %v", in, got, err, old, oerr)
	}
}
