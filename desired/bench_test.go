package desired

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// benchManifest is a realistic manifest: most fields set.
func benchManifest(i int) string {
	return fmt.Sprintf(`apiVersion: reconciled.dev/v1
kind: Container
metadata:
  name: svc-%d
  labels: {tier: edge, team: t%d}
spec:
  root: {path: /, readonly: true}
  command: ["/bin/sh", "-c", "while true; do date; sleep 5; done"]
  env: {LOG_LEVEL: info, INDEX: "%d"}
  user: "65534:65534"
  mounts:
    - {type: tmpfs, target: /tmp, size: 16Mi}
  resources: {memory: 64Mi, cpu: 100m, pids: 64}
  capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
  restart: always
  stop: {signal: SIGTERM, timeout: 5s}
`, i, i%10, i)
}

func benchDir(b *testing.B, n int) string {
	dir := b.TempDir()
	for i := 0; i < n; i++ {
		write(b, filepath.Join(dir, fmt.Sprintf("team-%d", i%10), fmt.Sprintf("svc-%d.yaml", i)), benchManifest(i))
	}
	return dir
}

// BenchmarkLoad1000 reads, parses, validates and converts 1,000 manifests
// from scratch (ms/op is the figure for a cold start).
func BenchmarkLoad1000(b *testing.B) {
	dir := benchDir(b, 1000)
	opts := Options{InsecureManifests: true}
	b.ResetTimer()
	for b.Loop() {
		snap, err := Scan(dir, opts)
		if err != nil {
			b.Fatal(err)
		}
		s := Next(Set{}, snap, opts)
		if len(s.Containers) != 1000 {
			b.Fatalf("%d containers", len(s.Containers))
		}
	}
}

// BenchmarkReload1000Unchanged is a Load of 1,000 unchanged manifests, as
// after an event: a stat of each file, no read, no parsing.
func BenchmarkReload1000Unchanged(b *testing.B) { benchReload(b, false) }

// BenchmarkReload1000Full is the full re-read of 1,000 unchanged manifests
// (a resync that found something changed, an overflow): read and hash, no
// parsing.
func BenchmarkReload1000Full(b *testing.B) { benchReload(b, true) }

func benchReload(b *testing.B, forget bool) {
	dir := benchDir(b, 1000)
	opts := Options{InsecureManifests: true}
	l := NewLoader(dir, opts, Set{})
	if _, _, err := l.Load(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if forget {
			l.Forget()
		}
		if _, changed, err := l.Load(); err != nil || changed {
			b.Fatalf("changed %v err %v", changed, err)
		}
	}
}

// BenchmarkLoad1000OneDirty is the Load that follows the event of one
// file renamed into place among 1,000 (a new version of it each time, so
// that the Set changes): ms/op is what the watcher spends between the
// event and the delivery.
func BenchmarkLoad1000OneDirty(b *testing.B) {
	dir := benchDir(b, 1000)
	opts := Options{InsecureManifests: true}
	l := NewLoader(dir, opts, Set{})
	if _, _, err := l.Load(); err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(dir, "team-3", "svc-3.yaml")
	tmp := filepath.Join(dir, "team-3", ".svc-3.tmp")
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		write(b, tmp, strings.Replace(benchManifest(3), "sleep 5", fmt.Sprintf("sleep %d", i), 1))
		if err := os.Rename(tmp, file); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		l.MarkDirty(file)
		s, changed, err := l.Load()
		if err != nil || !changed || len(s.Containers) != 1000 {
			b.Fatalf("changed %v err %v, %d containers", changed, err, len(s.Containers))
		}
	}
}

// BenchmarkRenameToDelivery measures the time from the rename of a new
// version of a file into place to the delivery of the Set that holds it,
// with the default debounce (100ms) and 100 other manifests in the
// directory. Each rename comes 5ms after the last delivery, as a drop does
// (renames closer together than Settle make one burst). It reports p50 and
// p99 in ms.
func BenchmarkRenameToDelivery(b *testing.B) { benchRenameToDelivery(b, 100) }

// BenchmarkRenameToDelivery1000 is BenchmarkRenameToDelivery with 1,000
// other manifests in the directory.
func BenchmarkRenameToDelivery1000(b *testing.B) { benchRenameToDelivery(b, 1000) }

func benchRenameToDelivery(b *testing.B, others int) {
	dir := benchDir(b, others)
	ch := startWatch(b, dir, WatchOptions{Debounce: DefaultDebounce})
	ch.next(5 * time.Second)
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		time.Sleep(5 * time.Millisecond)
		tmp := filepath.Join(dir, ".svc.tmp")
		write(b, tmp, manifest("moving", fmt.Sprint(i)))
		start := time.Now()
		if err := os.Rename(tmp, filepath.Join(dir, "moving.yaml")); err != nil {
			b.Fatal(err)
		}
		for {
			s := ch.next(5 * time.Second)
			if arg(s, "moving") == fmt.Sprint(i) {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
