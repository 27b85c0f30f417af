package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"reconciled.dev/reconciled/actual"
	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/reconciler"
)

// What the loop reports about a container (reconciler.Config.OnEvent)
// becomes its events; a stop that timed out says so and suggests init.
func TestEventsFromLoop(t *testing.T) {
	events := newEventLog()
	now := time.Now()
	for _, e := range []reconciler.Event{
		{Container: "web", Kind: reconciler.EventBegin, Action: reconciler.Stop, Reason: "recreated: spec.command changed"},
		{Container: "web", Kind: reconciler.EventBegin, Action: reconciler.Create, Reason: "recreated: spec.command changed"},
		{Container: "web", Kind: reconciler.EventFailed, Action: reconciler.Create, Err: errors.New("no space left on device")},
		{Container: "db", Kind: reconciler.EventStopTimedOut, Action: reconciler.Stop, Signal: "SIGTERM", Timeout: 10 * time.Second},
	} {
		e.Time = now
		events.fromLoop(e)
	}
	got := events.events("web")
	want := []Event{
		{Action: "stop", Reason: "recreated: spec.command changed"},
		{Action: "create", Reason: "recreated: spec.command changed"},
		{Action: "failed", Reason: "create failed: no space left on device"},
	}
	if len(got) != len(want) {
		t.Fatalf("events of web: %+v", got)
	}
	for i := range want {
		if got[i].Action != want[i].Action || got[i].Reason != want[i].Reason || !got[i].Time.Equal(now) {
			t.Errorf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if e := events.lastError("web"); e != "create failed: no space left on device" {
		t.Errorf("last error: %q", e)
	}
	db := events.events("db")
	if len(db) != 1 || db[0].Action != "stop" || !strings.Contains(db[0].Reason, "stop timed out: SIGTERM did not stop it within 10s, killed with SIGKILL") ||
		!strings.Contains(db[0].Reason, "init: true") {
		t.Errorf("events of db: %+v", db)
	}
}

// Only the last MaxEvents events are kept.
func TestEventLogKeepsLast(t *testing.T) {
	l := newEventLog()
	for i := range MaxEvents + 5 {
		l.add("x", Event{Action: "start", Reason: strings.Repeat("r", i+1)})
	}
	got := l.events("x")
	if len(got) != MaxEvents || len(got[0].Reason) != 6 || len(got[MaxEvents-1].Reason) != MaxEvents+5 {
		t.Errorf("kept %d events, first %q", len(got), got[0].Reason)
	}
}

// Rotation copies the file to .1, shifts older copies, drops the oldest and
// truncates the file in place (the writer keeps its descriptor).
func TestRotate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "web.log")
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for round, text := range []string{"first\n", "second\n", "third\n", "fourth\n"} {
		if _, err := w.WriteString(text); err != nil {
			t.Fatal(err)
		}
		r := &rotator{dir: dir, maxSize: 3, keep: 2, log: slog.New(slog.DiscardHandler)}
		r.check()
		if fi, err := os.Stat(p); err != nil || fi.Size() != 0 {
			t.Fatalf("round %d: %s not truncated: %v", round, p, err)
		}
	}
	// The writer's next line lands at the start of the truncated file.
	w.WriteString("fifth\n")
	for file, want := range map[string]string{"web.log": "fifth\n", "web.log.1": "fourth\n", "web.log.2": "third\n"} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || string(data) != want {
			t.Errorf("%s: %q, %v; want %q", file, data, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "web.log.3")); !os.IsNotExist(err) {
		t.Errorf("web.log.3 exists: %v", err)
	}
	// Small files are left alone.
	r := &rotator{dir: dir, maxSize: 100, keep: 2, log: slog.New(slog.DiscardHandler)}
	r.check()
	if data, _ := os.ReadFile(p); string(data) != "fifth\n" {
		t.Errorf("small file rotated: %q", data)
	}
}

// Seed rebuilds the set the containers were created from, so that a file
// that is invalid when the daemon starts keeps its containers.
func TestSeedKeepsContainersOfInvalidFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	good := "apiVersion: reconciled.dev/v1\nkind: Container\nmetadata: {name: web}\nspec:\n  root: {path: /, readonly: true}\n  command: [/bin/true]\n"
	opts := desired.Options{InsecureManifests: true}
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	first, _, err := desired.NewLoader(dir, opts, desired.Set{}).Load()
	if err != nil || first.Containers["web"] == nil {
		t.Fatalf("load: %v %+v", err, first)
	}
	records := map[string]actual.Record{"web": {Applied: first.Containers["web"]}, "orphan": {}}

	if err := os.WriteFile(path, []byte("spec: [broken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	next, _, err := desired.NewLoader(dir, opts, Seed(records)).Load()
	if err != nil {
		t.Fatal(err)
	}
	if c := next.Containers["web"]; c == nil || c.Hash != first.Containers["web"].Hash {
		t.Errorf("web not kept from the records: %+v", next.Containers)
	}
	if f := next.Files[path]; f == nil || len(f.Errors) == 0 {
		t.Errorf("web.yaml not reported invalid: %+v", f)
	}
	if _, ok := next.Containers["orphan"]; ok {
		t.Error("a record without a definition was seeded")
	}
	// Without the seed, the broken file defines nothing.
	bare, _, _ := desired.NewLoader(dir, opts, desired.Set{}).Load()
	if len(bare.Containers) != 0 {
		t.Errorf("unseeded: %+v", bare.Containers)
	}
}

// The status socket answers Query; no daemon is ErrNoDaemon.
func TestQueryNoDaemon(t *testing.T) {
	var r Report
	err := Query(context.Background(), t.TempDir(), "/v1/status", &r)
	if !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Query without a daemon: %v", err)
	}
}
