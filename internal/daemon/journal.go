package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// Log drivers: where a container's stdout and stderr go.
const (
	// LogDriverFile: LOGDIR/NAME.log, rotated by the daemon.
	LogDriverFile = "file"
	// LogDriverJournald: the systemd journal, SYSLOG_IDENTIFIER=NAME.
	LogDriverJournald = "journald"
)

// JournalStdoutSocket is journald's stream socket, the one systemd hands
// services' stdout to.
const JournalStdoutSocket = "/run/systemd/journal/stdout"

// ErrNoJournal: --log-driver journald on a host where journald does not
// listen.
var ErrNoJournal = errors.New("systemd-journald is not running")

// Syslog priorities of the two streams (as docker's journald driver).
const (
	journalPrioStdout = 6 // info
	journalPrioStderr = 3 // err
)

// checkJournal fails when nothing listens on socket.
func checkJournal(socket string) error {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return fmt.Errorf("--log-driver journald: %w (%v); start systemd-journald or use --log-driver file", ErrNoJournal, err)
	}
	return c.Close()
}

// openJournalStream connects a stream to journald for container name: a
// unix stream socket to socket, after the header of journald's stdout
// stream protocol (identifier, unit id, priority, level prefix, forward to
// syslog, kmsg, console). Every line written to the returned file becomes
// one journal entry with SYSLOG_IDENTIFIER=name and PRIORITY=prio. The
// file is meant to be the container's stdout or stderr: it stays
// connected after the daemon exits, as a log file would.
func openJournalStream(socket, name string, prio int) (*os.File, error) {
	if strings.ContainsAny(name, "\n") {
		return nil, fmt.Errorf("journal identifier %q has a newline", name)
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("unable to connect to the journal at %s: %w", socket, err)
	}
	defer c.Close()
	header := name + "\n" + // SYSLOG_IDENTIFIER
		"\n" + // unit id: journald takes the unit from the peer
		strconv.Itoa(prio) + "\n" +
		"0\n" + // level_prefix: a "<3>" at a line's start is text, not a priority
		"0\n" + // forward_to_syslog
		"0\n" + // forward_to_kmsg
		"0\n" // forward_to_console
	if _, err := c.Write([]byte(header)); err != nil {
		return nil, fmt.Errorf("unable to write the stream header to the journal at %s: %w", socket, err)
	}
	// journald never writes back.
	if err := c.CloseRead(); err != nil {
		return nil, fmt.Errorf("unable to shut down reading of the journal stream: %w", err)
	}
	f, err := c.File() // a dup, blocking mode, close-on-exec
	if err != nil {
		return nil, fmt.Errorf("unable to get the journal stream's fd: %w", err)
	}
	return f, nil
}
