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

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"reconciled.dev/reconciled/executor/cgroups"
	"reconciled.dev/reconciled/internal/atomicfile"
	"reconciled.dev/reconciled/internal/statedir"
)

// cgroupParent is where this daemon puts its containers' cgroups
// (statedir.CgroupParent, recorded in STATE/cgroup-parent.json).
type cgroupParent = statedir.CgroupParent

const cgroupParentVersion = statedir.CgroupParentVersion

// defaultCgroupParent is the parent of a daemon whose state directory is
// state (absolute): the driver's defaults for DefaultState, so that
// existing installations keep their cgroups, else one derived from the
// directory (cgroups.DerivedParent).
func defaultCgroupParent(state string) cgroupParent {
	key := filepath.Clean(state)
	if key == DefaultState {
		key = ""
	}
	p, s := cgroups.DerivedParent(key)
	return cgroupParent{Version: cgroupParentVersion, Cgroupfs: p, Systemd: s}
}

// parentFromFlag is the parent --cgroup-parent VALUE names: VALUE is the
// cgroupfs directory; the slice is VALUE when it ends in ".slice", else
// VALUE's path with '/' as '-' (a/b: a-b.slice). A value ending in
// ".slice" is used as a directory name by cgroupfs.
func parentFromFlag(v string) (cgroupParent, error) {
	dir, err := cgroups.CleanParent(v)
	if err != nil {
		return cgroupParent{}, fmt.Errorf("--cgroup-parent: %w", err)
	}
	slice := v
	if !strings.HasSuffix(v, ".slice") {
		slice = strings.ReplaceAll(strings.Trim(dir, "/"), "/", "-") + ".slice"
	}
	if err := cgroups.CheckSlice(slice); err != nil {
		return cgroupParent{}, fmt.Errorf("--cgroup-parent %q: as a systemd slice: %w", v, err)
	}
	return cgroupParent{Version: cgroupParentVersion, Cgroupfs: dir, Systemd: slice}, nil
}

// loadCgroupParent returns the daemon's cgroup parent: the recorded one,
// or the one --cgroup-parent names (flag), or the default for the state
// directory; it records a new or changed one.
func loadCgroupParent(layout Layout, flag string, log *slog.Logger) (cgroupParent, error) {
	file := layout.CgroupParent()
	var rec cgroupParent
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &rec); err != nil || rec.Cgroupfs == "" || rec.Systemd == "" {
			return cgroupParent{}, fmt.Errorf("unable to parse %s (remove it to derive the parent from the state directory, or give --cgroup-parent): %v", file, err)
		}
		if rec.Version != cgroupParentVersion {
			return cgroupParent{}, fmt.Errorf("%s: version %d is not known to this release (want %d)", file, rec.Version, cgroupParentVersion)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return cgroupParent{}, fmt.Errorf("unable to read %s: %w", file, err)
	}
	want := rec
	switch {
	case flag != "":
		if want, err = parentFromFlag(flag); err != nil {
			return cgroupParent{}, err
		}
	case rec.Cgroupfs == "":
		want = defaultCgroupParent(string(layout))
	}
	if want == rec {
		return rec, nil
	}
	if rec.Cgroupfs != "" {
		log.Info("the cgroup parent changed: new containers go under the new one, existing ones stay where they are",
			"from", rec.Cgroupfs, "to", want.Cgroupfs, "fromSlice", rec.Systemd, "toSlice", want.Systemd)
	}
	data, err = json.MarshalIndent(want, "", "  ")
	if err != nil {
		return cgroupParent{}, err
	}
	if err := atomicfile.Write(filepath.Dir(file), filepath.Base(file), append(data, '\n'), 0o644, atomicfile.SyncDir); err != nil {
		return cgroupParent{}, fmt.Errorf("unable to record the cgroup parent in %s: %w", file, err)
	}
	return want, nil
}

// withCgroupsPath returns spec with linux.cgroupsPath set to path when it
// is empty (the manifest may not set it: reconciled manages it).
func withCgroupsPath(spec *specs.Spec, path string) *specs.Spec {
	if spec.Linux == nil || spec.Linux.CgroupsPath != "" || path == "" {
		return spec
	}
	s := *spec
	l := *spec.Linux
	l.CgroupsPath = path
	s.Linux = &l
	return &s
}

// RecordedCgroupsPath returns where the daemon whose state directory is
// state puts container id's cgroup with the cgroupfs driver, as it
// recorded (statedir.RecordedCgroupsPath).
func RecordedCgroupsPath(state string) func(id string) string {
	return statedir.RecordedCgroupsPath(state)
}
