package actual

import (
	"encoding/json"
	"fmt"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/desired"
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
	// Manifest is desired.Manifest in its own JSON form. It serves the
	// names of changed fields in plan reasons, not the decision to
	// recreate (Hash does that): a manifest that no longer decodes is
	// dropped (the reason then says "spec changed"), not the record.
	Manifest json.RawMessage `json:"manifest,omitempty"`
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
		}
		if c.Manifest != nil {
			m, err := json.Marshal(c.Manifest)
			if err != nil {
				return nil, fmt.Errorf("unable to encode the manifest of %s: %w", c.Name, err)
			}
			f.Applied.Manifest = m
		}
	}
	data, err := json.MarshalIndent(f, "", "  ")
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
