package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"reconciled.dev/reconciled/internal/atomicfile"
)

// importsVersion is the version of STATE/imports.json this code writes.
const importsVersion = 1

// importsFile is STATE/imports.json: what was imported from the import
// directory, by content digest, so that nothing is imported twice. Its
// fields are the on-disk format (testdata/imports-v1.json).
type importsFile struct {
	Version int            `json:"version"`
	Imports []importRecord `json:"imports"`
}

// importRecord is one content imported, or failed to import.
type importRecord struct {
	Digest   string    `json:"digest"`
	Path     string    `json:"path"`
	Images   []string  `json:"images,omitempty"`
	Imported time.Time `json:"imported"`
	Error    string    `json:"error,omitempty"`
}

// maxImportRecords bounds imports.json; the oldest records go first.
const maxImportRecords = 512

// readImports reads STATE/imports.json; a missing file has no records.
func readImports(path string) ([]importRecord, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f importsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if f.Version > importsVersion {
		return nil, fmt.Errorf("%s has version %d; this build reads up to %d", path, f.Version, importsVersion)
	}
	return f.Imports, nil
}

// saveLocked writes the records (temp file, fsync, rename, directory
// fsync), the oldest dropped past maxImportRecords.
func (d *importDir) saveLocked() error {
	recs := make([]importRecord, 0, len(d.records))
	for _, r := range d.records {
		recs = append(recs, *r)
	}
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].Imported.Equal(recs[j].Imported) {
			return recs[i].Imported.Before(recs[j].Imported)
		}
		return recs[i].Digest < recs[j].Digest
	})
	if n := len(recs) - maxImportRecords; n > 0 {
		for _, r := range recs[:n] {
			delete(d.records, r.Digest)
			delete(d.recent, r.Digest)
		}
		recs = recs[n:]
	}
	f := importsFile{Version: importsVersion, Imports: recs}
	if err := atomicfile.WriteJSON(filepath.Dir(d.statePath), filepath.Base(d.statePath), f, 0o600, atomicfile.SyncDir); err != nil {
		return fmt.Errorf("writing the import records: %w", err)
	}
	return nil
}
