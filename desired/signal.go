package desired

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// signalNames are Linux's standard signal numbers (x86, arm, arm64, riscv),
// the primary name of a number before its aliases (SIGABRT before SIGIOT,
// SIGIO before SIGPOLL). A list, not a map: it is static data, where a map
// would be built at every start of the binary.
var signalNames = [...]struct {
	name string
	sig  syscall.Signal
}{
	{"SIGHUP", 1}, {"SIGINT", 2}, {"SIGQUIT", 3}, {"SIGILL", 4}, {"SIGTRAP", 5},
	{"SIGABRT", 6}, {"SIGIOT", 6}, {"SIGBUS", 7}, {"SIGFPE", 8}, {"SIGKILL", 9},
	{"SIGUSR1", 10}, {"SIGSEGV", 11}, {"SIGUSR2", 12}, {"SIGPIPE", 13}, {"SIGALRM", 14},
	{"SIGTERM", 15}, {"SIGSTKFLT", 16}, {"SIGCHLD", 17}, {"SIGCONT", 18}, {"SIGSTOP", 19},
	{"SIGTSTP", 20}, {"SIGTTIN", 21}, {"SIGTTOU", 22}, {"SIGURG", 23}, {"SIGXCPU", 24},
	{"SIGXFSZ", 25}, {"SIGVTALRM", 26}, {"SIGPROF", 27}, {"SIGWINCH", 28}, {"SIGIO", 29},
	{"SIGPOLL", 29}, {"SIGPWR", 30}, {"SIGSYS", 31},
}

const (
	sigRTMin = 34
	sigRTMax = 64
)

// ParseSignal accepts a signal name with or without the SIG prefix, in any
// case ("TERM", "sigterm", "SIGTERM"), "SIGRTMIN+n"/"SIGRTMAX-n", or a number
// (1 to 64).
func ParseSignal(s string) (syscall.Signal, error) {
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

// SignalName is the canonical name of sig: "SIGTERM", "SIGRTMIN+3".
func SignalName(sig syscall.Signal) string {
	for _, e := range signalNames {
		if e.sig == sig {
			return e.name
		}
	}
	if sig >= sigRTMin && sig <= sigRTMax {
		if sig == sigRTMin {
			return "SIGRTMIN"
		}
		return fmt.Sprintf("SIGRTMIN+%d", int(sig)-sigRTMin)
	}
	return strconv.Itoa(int(sig))
}
