//go:build linux

package sys

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUnknownSignal is what ParseSignal's errors wrap.
var ErrUnknownSignal = errors.New("unknown signal")

// SigRTMin and SigRTMax bound the real-time signals as a container's
// programs see them. The kernel's real-time range starts at 32, but glibc
// keeps 32 and 33 for its threads and its SIGRTMIN is 34; `kill -l`, bash,
// dash, docker (moby/sys/signal: sigrtmin = 34) and podman all name 34
// SIGRTMIN, so SIGRTMIN+3 is 37, the number the kernel delivers. (musl
// reserves 34 too and says SIGRTMIN is 35: a musl program that traps its
// own SIGRTMIN+3 waits for 38. Give such a program the number.) Signals 32
// and 33 have no name here; they can be given as numbers.
const (
	SigRTMin unix.Signal = 34
	SigRTMax unix.Signal = 64 // _NSIG
)

// signalNames are Linux's standard signal numbers (x86, arm, arm64, riscv),
// the primary name of a number before its aliases (SIGABRT before SIGIOT,
// SIGIO before SIGPOLL). A list, not a map: it is static data, where a map
// would be built at every start of the binary.
var signalNames = [...]struct {
	name string
	sig  unix.Signal
}{
	{"SIGHUP", 1}, {"SIGINT", 2}, {"SIGQUIT", 3}, {"SIGILL", 4}, {"SIGTRAP", 5},
	{"SIGABRT", 6}, {"SIGIOT", 6}, {"SIGBUS", 7}, {"SIGFPE", 8}, {"SIGKILL", 9},
	{"SIGUSR1", 10}, {"SIGSEGV", 11}, {"SIGUSR2", 12}, {"SIGPIPE", 13}, {"SIGALRM", 14},
	{"SIGTERM", 15}, {"SIGSTKFLT", 16}, {"SIGCHLD", 17}, {"SIGCONT", 18}, {"SIGSTOP", 19},
	{"SIGTSTP", 20}, {"SIGTTIN", 21}, {"SIGTTOU", 22}, {"SIGURG", 23}, {"SIGXCPU", 24},
	{"SIGXFSZ", 25}, {"SIGVTALRM", 26}, {"SIGPROF", 27}, {"SIGWINCH", 28}, {"SIGIO", 29},
	{"SIGPOLL", 29}, {"SIGPWR", 30}, {"SIGSYS", 31},
}

// ParseSignal reads a signal as a manifest, an image's StopSignal or the
// command line gives it, the one parser of signal names in reconciled:
//
//   - a number from 1 to 64 ("15", "37");
//   - a name, in any case, with or without the SIG prefix ("SIGTERM",
//     "TERM", "term", "SIGIOT");
//   - a real-time signal: "SIGRTMIN", "SIGRTMIN+n", "SIGRTMAX", "SIGRTMAX-n",
//     also in any case and without SIG ("RTMIN+3"), within 34 to 64.
//
// Its errors wrap ErrUnknownSignal.
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > int(SigRTMax) {
			return 0, fmt.Errorf("%w: number %d is not in 1-%d", ErrUnknownSignal, n, SigRTMax)
		}
		return unix.Signal(n), nil
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
	if sig, ok := parseRealtime(u); ok {
		return sig, nil
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownSignal, s)
}

// parseRealtime reads "SIGRTMIN", "SIGRTMIN+n", "SIGRTMAX" or "SIGRTMAX-n"
// (upper case). The offset is read by strconv.Atoi, as desired's first
// parser read it, so "SIGRTMIN+03" is SIGRTMIN+3.
func parseRealtime(u string) (unix.Signal, bool) {
	base, sign, rest := SigRTMin, byte('+'), ""
	switch {
	case strings.HasPrefix(u, "SIGRTMIN"):
		rest = u[len("SIGRTMIN"):]
	case strings.HasPrefix(u, "SIGRTMAX"):
		base, sign, rest = SigRTMax, '-', u[len("SIGRTMAX"):]
	default:
		return 0, false
	}
	n := 0
	if rest != "" {
		if rest[0] != sign || len(rest) == 1 {
			return 0, false
		}
		var err error
		if n, err = strconv.Atoi(rest[1:]); err != nil {
			return 0, false
		}
	}
	sig := int(base) + n
	if sign == '-' {
		sig = int(base) - n
	}
	if sig < int(SigRTMin) || sig > int(SigRTMax) {
		return 0, false
	}
	return unix.Signal(sig), true
}

// SignalName is the canonical name of sig, the one ParseSignal's callers
// store and compare: "SIGTERM" (the primary name: SIGABRT, not SIGIOT),
// "SIGRTMIN" and "SIGRTMIN+n" for every real-time signal (SIGRTMIN+30, not
// SIGRTMAX), and the number for a signal without a name (32, 33, or one
// out of range). ParseSignal(SignalName(sig)) is sig for 1 to 64.
func SignalName(sig unix.Signal) string {
	for _, e := range signalNames {
		if e.sig == sig {
			return e.name
		}
	}
	if sig >= SigRTMin && sig <= SigRTMax {
		if sig == SigRTMin {
			return "SIGRTMIN"
		}
		return fmt.Sprintf("SIGRTMIN+%d", int(sig-SigRTMin))
	}
	return strconv.Itoa(int(sig))
}
