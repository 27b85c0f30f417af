package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A container's events outlive the event log that recorded them, bounded
// to MaxEvents, and go when the container is forgotten; an unreadable file
// is skipped.
func TestEventLogPersists(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	l := newEventLog()
	if err := l.persistTo(dir, log); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for i := range MaxEvents + 5 {
		l.add("web", Event{Time: t0.Add(time.Duration(i) * time.Second), Action: "start", Reason: "r" + string(rune('a'+i))})
	}
	l.add("db", Event{Time: t0, Action: "create", Reason: "created"})
	if err := os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}

	again := newEventLog()
	if err := again.persistTo(dir, log); err != nil {
		t.Fatal(err)
	}
	got, want := again.events("web"), l.events("web")
	if len(got) != MaxEvents || len(want) != MaxEvents {
		t.Fatalf("%d events loaded, %d kept, want %d", len(got), len(want), MaxEvents)
	}
	for i := range want {
		if got[i].Reason != want[i].Reason || !got[i].Time.Equal(want[i].Time) {
			t.Errorf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if len(again.events("bad")) != 0 {
		t.Errorf("events from an unreadable file: %+v", again.events("bad"))
	}
	again.forget("db")
	if _, err := os.Stat(filepath.Join(dir, "db.json")); !os.IsNotExist(err) {
		t.Errorf("db.json after forget: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "web.json")); err != nil {
		t.Errorf("web.json: %v", err)
	}
}
