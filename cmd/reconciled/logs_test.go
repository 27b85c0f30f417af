package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/internal/testutil"
)

func TestLogsTail(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 40<<10) // longer than one read block
	cases := []struct {
		content string
		n       int
		want    string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 10, "a\nb\nc\n"},
		{"a\nb\nc\n", 0, ""},
		{"a\nb\nc", 1, "c"}, // a last line without its newline counts
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\nc\n", -1, "a\nb\nc\n"},
		{"", 5, ""},
		{"first\n" + long + "\nlast\n", 2, long + "\nlast\n"},
	}
	for i, c := range cases {
		p := filepath.Join(dir, "x.log")
		if err := os.WriteFile(p, []byte(c.content), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		off, err := printTail(&out, f, c.n)
		f.Close()
		if err != nil || out.String() != c.want || off != int64(len(c.content)) {
			t.Errorf("case %d: tail %d of %q = %q (offset %d, %v), want %q", i, c.n, shorten(c.content), shorten(out.String()), off, err, shorten(c.want))
		}
	}
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:20] + "..." + s[len(s)-20:]
	}
	return s
}

// logs -f prints what is appended, and goes on from the start of the file
// after a copytruncate rotation.
func TestLogsFollowAcrossTruncation(t *testing.T) {
	p := filepath.Join(t.TempDir(), "web.log")
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.WriteString("old\n")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- followFile(ctx, &out, p, f, 4, 5*time.Millisecond) }()

	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for out.String() != want {
			if time.Now().After(deadline) {
				t.Fatalf("followed %q, want %q", out.String(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	w.WriteString("one\n")
	waitFor("one\n")
	if err := os.Truncate(p, 0); err != nil { // rotated
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond) // let it see the shorter file
	w.WriteString("two\n")
	waitFor("one\ntwo\n")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
