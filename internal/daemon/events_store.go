package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"reconciled.dev/reconciled/internal/atomicfile"
)

// maxEventsFile caps what is read of one container's events file (20
// events of a few hundred bytes each; a larger file is not ours).
const maxEventsFile = 1 << 20

// persistTo makes l keep each container's events in dir/NAME.json, so that
// `status NAME` shows them after a daemon restart: it loads what an
// earlier daemon left there, then writes a container's file (atomically,
// not synced: a view) after each new event and removes it when the
// container is forgotten. A file that cannot be read is skipped with a
// warning (and replaced by the next event).
func (l *eventLog) persistTo(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("unable to create the events directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("unable to read the events directory: %w", err)
	}
	loaded := map[string][]Event{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			if strings.HasPrefix(e.Name(), ".") {
				os.Remove(filepath.Join(dir, e.Name())) // a temporary file of a write cut short
			}
			continue
		}
		evs, err := readEvents(filepath.Join(dir, e.Name()))
		if err != nil {
			log.Warn("unable to load a container's events", "container", name, "err", err)
			continue
		}
		loaded[name] = evs
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dir, l.storeLog = dir, log
	for name, evs := range loaded {
		l.byName[name] = append(evs, l.byName[name]...)
		if n := len(l.byName[name]); n > MaxEvents {
			l.byName[name] = l.byName[name][n-MaxEvents:]
		}
	}
	return nil
}

func readEvents(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var evs []Event
	dec := json.NewDecoder(&limitedReader{f, maxEventsFile})
	if err := dec.Decode(&evs); err != nil {
		return nil, fmt.Errorf("unable to parse %s: %w", path, err)
	}
	if len(evs) > MaxEvents {
		evs = evs[len(evs)-MaxEvents:]
	}
	return evs, nil
}

// limitedReader fails instead of ending at its limit, so that a file
// larger than it is an error and not a truncated document.
type limitedReader struct {
	f *os.File
	n int64
}

func (r *limitedReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("file too large")
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n, err := r.f.Read(p)
	r.n -= int64(n)
	return n, err
}

// save writes container name's events; l.mu is held.
func (l *eventLog) save(name string, evs []Event) {
	if l.dir == "" {
		return
	}
	data, err := json.Marshal(evs)
	if err == nil {
		err = atomicfile.Write(l.dir, name+".json", append(data, '\n'), 0o644, atomicfile.NoSync)
	}
	if err != nil {
		l.storeLog.Warn("unable to save the container's events", "container", name, "err", err)
	}
}

// unsave removes container name's events file; l.mu is held.
func (l *eventLog) unsave(name string) {
	if l.dir == "" {
		return
	}
	if err := os.Remove(filepath.Join(l.dir, name+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		l.storeLog.Warn("unable to remove the container's events", "container", name, "err", err)
	}
}

// names lists the containers l has events of.
func (l *eventLog) names() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.byName))
	for n := range l.byName {
		out = append(out, n)
	}
	return out
}
