package actual

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/desired"
	"reconciled.dev/reconciled/executor"
	"reconciled.dev/reconciled/internal/atomicfile"
)

// recordVersion is the version of the record format (containers/NAME.json)
// this release writes. Version 0, a file without "version", is what the
// releases before it wrote: the same keys, read the same way.
const recordVersion = 1

// recordFile is a Record on disk. Its keys are fixed here, not by the types
// a Record holds: renaming a field of desired.Container changes
// toRecordFile and fromRecordFile, not the file, so that a record written
// by an earlier release is read by a later one and its container is not
// recreated on upgrade (testdata/records-v0 holds one such file).
type recordFile struct {
	Version       int          `json:"version"`
	Applied       *appliedFile `json:"applied,omitempty"`
	Restarts      int          `json:"restarts,omitempty"`
	Failures      int          `json:"failures,omitempty"`
	StopRequested time.Time    `json:"stopRequested,omitzero"`
}

// appliedFile is a desired.Container on disk (Record.Applied).
type appliedFile struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Source      string            `json:"source"`
	Doc         int               `json:"doc"`
	Line        int               `json:"line,omitempty"`
	Spec        *specs.Spec       `json:"spec"` // the runtime-spec's own format
	Hash        string            `json:"hash"`
	BaseHash    string            `json:"baseHash"`
	Restart     string            `json:"restart"`
	StopSignal  string            `json:"stopSignal"`
	StopTimeout time.Duration     `json:"stopTimeout"` // ns
	Runtime     string            `json:"runtime,omitempty"`
	Image       string            `json:"image,omitempty"`
	PullPolicy  string            `json:"imagePullPolicy,omitempty"`
	ImageDigest string            `json:"imageDigest,omitempty"`
	// ImageHealth is the image's HEALTHCHECK as the container was created
	// with it (desired.Container.ImageHealth).
	ImageHealth *healthFile `json:"imageHealth,omitempty"`
	// Manifest is desired.Manifest in its own JSON form. It serves the
	// names of changed fields in plan reasons, not the decision to
	// recreate (Hash does that): a manifest that no longer decodes is
	// dropped (the reason then says "spec changed"), not the record.
	Manifest json.RawMessage `json:"manifest,omitempty"`
}

// healthFile is an image's HEALTHCHECK probe on disk (appliedFile): always
// an exec probe.
type healthFile struct {
	Exec        []string      `json:"exec"`
	Interval    time.Duration `json:"interval"` // ns
	Timeout     time.Duration `json:"timeout"`  // ns
	Retries     int           `json:"retries"`
	StartPeriod time.Duration `json:"startPeriod,omitempty"` // ns
	OnUnhealthy string        `json:"onUnhealthy"`
}

func toHealthFile(h *desired.Health) *healthFile {
	if h == nil || len(h.Exec) == 0 {
		return nil
	}
	return &healthFile{Exec: h.Exec, Interval: h.Interval, Timeout: h.Timeout, Retries: h.Retries, StartPeriod: h.StartPeriod, OnUnhealthy: string(h.OnUnhealthy)}
}

func fromHealthFile(f *healthFile) *desired.Health {
	if f == nil || len(f.Exec) == 0 {
		return nil
	}
	return &desired.Health{Exec: f.Exec, Interval: f.Interval, Timeout: f.Timeout, Retries: f.Retries, StartPeriod: f.StartPeriod, OnUnhealthy: desired.OnUnhealthy(f.OnUnhealthy)}
}

// EncodeRecord is the content of a record file for r, in the current
// format.
func EncodeRecord(r Record) ([]byte, error) {
	f := recordFile{Version: recordVersion, Restarts: r.Restarts, Failures: r.Failures, StopRequested: r.StopRequested}
	if c := r.Applied; c != nil {
		f.Applied = &appliedFile{
			Name: c.Name, Labels: c.Labels, Source: c.Source, Doc: c.Doc, Line: c.Line,
			Spec: c.Spec, Hash: c.Hash, BaseHash: c.BaseHash,
			Restart: string(c.Restart), StopSignal: c.StopSignal, StopTimeout: c.StopTimeout,
			Runtime: c.Runtime, Image: c.Image, PullPolicy: string(c.PullPolicy), ImageDigest: c.ImageDigest,
			ImageHealth: toHealthFile(c.ImageHealth),
		}
		if c.Manifest != nil {
			m, err := json.Marshal(c.Manifest)
			if err != nil {
				return nil, fmt.Errorf("unable to encode the manifest of %s: %w", c.Name, err)
			}
			f.Applied.Manifest = m
		}
	}
	// Compact: it holds the whole spec, written at every create (half the
	// bytes and the time of an indented one).
	data, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// DecodeRecord reads the content of a record file written by this release
// or an earlier one.
func DecodeRecord(data []byte) (Record, error) {
	var f recordFile
	if err := json.Unmarshal(data, &f); err != nil {
		return Record{}, err
	}
	if f.Version > recordVersion {
		return Record{}, fmt.Errorf("record format version %d is newer than this release reads (%d): written by a later release", f.Version, recordVersion)
	}
	r := Record{Restarts: f.Restarts, Failures: f.Failures, StopRequested: f.StopRequested}
	if a := f.Applied; a != nil {
		r.Applied = &desired.Container{
			Name: a.Name, Labels: a.Labels, Source: a.Source, Doc: a.Doc, Line: a.Line,
			Spec: a.Spec, Hash: a.Hash, BaseHash: a.BaseHash,
			Restart: desired.RestartPolicy(a.Restart), StopSignal: a.StopSignal, StopTimeout: a.StopTimeout,
			Runtime: a.Runtime, Image: a.Image, PullPolicy: desired.PullPolicy(a.PullPolicy), ImageDigest: a.ImageDigest,
			ImageHealth: fromHealthFile(a.ImageHealth),
		}
		if len(a.Manifest) > 0 && string(a.Manifest) != "null" {
			var m desired.Manifest
			if json.Unmarshal(a.Manifest, &m) == nil {
				r.Applied.Manifest = &m
			}
		}
	}
	return r, nil
}

// ErrRecord marks a record file that cannot be read or parsed.
var ErrRecord = errors.New("unreadable container record")

// loadRecords reads every record in s.dir (a missing directory is empty).
// Records that cannot be read or parsed are reported in the error (wrapping
// ErrRecord) and skipped; a directory that cannot be listed is an error
// that does not wrap ErrRecord.
func (s *Store) loadRecords() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("unable to list container records in %s: %w", s.dir, err)
	}
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w %s: %w", ErrRecord, path, err))
			continue
		}
		r, err := DecodeRecord(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w %s: %w", ErrRecord, path, err))
			continue
		}
		s.records[name] = r
	}
	return errors.Join(errs...)
}

// Records returns a copy of every record, by container name.
func (s *Store) Records() map[string]Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Record, len(s.records))
	for n, r := range s.records {
		out[n] = r
	}
	return out
}

// Record replaces container name's record, on disk first.
func (s *Store) Record(ctx context.Context, name string, r Record) error {
	if err := executor.ValidateID(name); err != nil {
		return err
	}
	data, err := EncodeRecord(r)
	if err != nil {
		return fmt.Errorf("unable to encode the record of %s: %w", name, err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("unable to create %s: %w", s.dir, err)
	}
	if err := atomicfile.Write(s.dir, name+".json", data, 0o600, atomicfile.SyncDir); err != nil {
		return fmt.Errorf("unable to write the record of %s: %w", name, err)
	}
	s.mu.Lock()
	s.records[name] = r
	s.mu.Unlock()
	return nil
}

// Forget removes container name's record; a missing one is not an error.
func (s *Store) Forget(ctx context.Context, name string) error {
	if err := executor.ValidateID(name); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(s.dir, name+".json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unable to remove the record of %s: %w", name, err)
	}
	if err == nil {
		if err := atomicfile.SyncDirectory(s.dir); err != nil {
			return fmt.Errorf("unable to remove the record of %s: %w", name, err)
		}
	}
	s.mu.Lock()
	delete(s.records, name)
	s.mu.Unlock()
	return nil
}
