package executor

import (
	"bufio"
	"log/slog"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// stageLogRelay carries a stage's debug lines (what runc's log pipe
// carries from nsexec and its init) to the runtime's logger: the stage
// writes lines to w (its fd named by an environment variable), a goroutine
// logs each one. A nil relay does nothing.
type stageLogRelay struct {
	w    *os.File // the stage's end; closed here once the stage has it
	done chan struct{}
}

func relayStageLog(log *slog.Logger) (*stageLogRelay, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	l := &stageLogRelay{w: w, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer r.Close()
		s := bufio.NewScanner(r)
		for s.Scan() {
			log.Debug(s.Text())
		}
	}()
	return l, nil
}

// started closes the caller's copy of the write end, once the stage has
// been started with its own: the relay ends when the stage's copy closes
// (its exec or exit).
func (l *stageLogRelay) started() {
	if l != nil && l.w != nil {
		l.w.Close()
		l.w = nil
	}
}

// wait waits for the relay to log what the stage wrote, for a second at
// most (a stage that lingers must not hold its caller).
func (l *stageLogRelay) wait() {
	if l == nil {
		return
	}
	l.started()
	select {
	case <-l.done:
	case <-time.After(time.Second):
	}
}

func (l *stageLogRelay) close() { l.started() }

// stageLogger returns the stage's side of the relay: a func that writes
// one line to the fd the environment variable env names (made
// close-on-exec, so the command never holds it), or a no-op without one.
func stageLogger(env string) func(string) {
	s := os.Getenv(env)
	os.Unsetenv(env)
	fd, err := strconv.Atoi(s)
	if s == "" || err != nil || fd < 3 {
		return func(string) {}
	}
	unix.CloseOnExec(fd)
	return func(msg string) {
		b := []byte(msg + "\n")
		retryEINTR(func() error { _, err := unix.Write(fd, b); return err })
	}
}
