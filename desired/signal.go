package desired

import (
	"syscall"

	"reconciled.dev/reconciled/internal/sys"
)

// ParseSignal accepts a signal name with or without the SIG prefix, in any
// case ("TERM", "sigterm", "SIGTERM"), "SIGRTMIN+n"/"SIGRTMAX-n", or a number
// (1 to 64). It is sys.ParseSignal, the parser the loop and the runtime use
// too: what validates here is what stops a container.
func ParseSignal(s string) (syscall.Signal, error) { return sys.ParseSignal(s) }

// SignalName is the canonical name of sig: "SIGTERM", "SIGRTMIN+3"
// (sys.SignalName).
func SignalName(sig syscall.Signal) string { return sys.SignalName(sig) }
