package daemon

import (
	"bufio"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"reconciled.dev/reconciled/desired"
)

func TestStatusLine(t *testing.T) {
	bad := &desired.Set{Files: map[string]*desired.FileStatus{
		"a.yaml": {Path: "a.yaml"},
		"b.yaml": {Path: "b.yaml", Errors: []*desired.Error{{Field: "x"}}},
	}}
	for _, tc := range []struct {
		phases []string
		want   *desired.Set
		line   string
	}{
		{nil, nil, "no containers"},
		{[]string{"backoff", "running", "running"}, bad, "2 running, 1 backoff, 1 invalid file"},
		{[]string{"invalid", "pending", "weird"}, &desired.Set{}, "1 pending, 1 invalid, 1 weird"},
	} {
		if got := statusLine(tc.phases, tc.want); got != tc.line {
			t.Errorf("statusLine(%v) = %q, want %q", tc.phases, got, tc.line)
		}
	}
}

// openJournalStream speaks journald's stdout stream protocol: the header,
// then the lines written to the file. The listener is a fake journald (the
// real one is in test/systemd_e2e).
func TestJournalStreamHeader(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "stdout")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		var lines []string
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		got <- lines
	}()
	f, err := openJournalStream(sock, "web", journalPrioStderr)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("hello\n")
	f.Close()
	want := "web||3|0|0|0|0|hello"
	if lines := <-got; strings.Join(lines, "|") != want {
		t.Errorf("stream = %q, want %q", strings.Join(lines, "|"), want)
	}
	if err := checkJournal(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("checkJournal of a missing socket: no error")
	}
}
