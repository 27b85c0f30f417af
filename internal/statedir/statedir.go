// Package statedir is where the daemon keeps what it keeps under its state
// directory, and the defaults of its command line: what both the daemon
// and the runtime command line (`reconciled runtime`, which the container
// stages' own binary carries too, without the daemon) need to know.
package statedir

import (
	"encoding/json"
	"os"
	"path/filepath"

	"reconciled.dev/reconciled/executor/cgroups"
)

// Defaults of the command line.
const (
	DefaultManifests = "/etc/reconciled.d"
	DefaultState     = "/run/reconciled"
	DefaultLogDir    = "/var/log/reconciled"
)

// Layout is where things live under a state directory:
//
//	STATE/runtime/NAME/      the executor's state (its root)
//	STATE/rootfs/NAME/       an image container's root filesystem (an overlay mount)
//	STATE/rw/NAME/           its writable layer (upper and work), when root.readonly is false
//	STATE/bundles/NAME/      config.json the container was created from
//	STATE/containers/NAME.json  the daemon's record (actual.Record)
//	STATE/status/NAME.json   the container's status, for tools
//	STATE/events/NAME.json   the container's last events (status NAME), across restarts
//	STATE/reconciled.sock    the status socket (0600)
//	STATE/reconciled.lock    held by the running daemon
//	STATE/daemon.json        the running daemon's settings (log directory)
//	STATE/imports.json       the archives imported from the import directory
//	STATE/cgroup-parent.json this daemon's cgroup parent and slice (cgroupParent)
//	STATE/userns.json        the host ID ranges of userns: auto containers (usernsAlloc)
type Layout string

func (l Layout) Runtime() string           { return filepath.Join(string(l), "runtime") }
func (l Layout) OCI() string               { return filepath.Join(string(l), "oci") }
func (l Layout) Bundles() string           { return filepath.Join(string(l), "bundles") }
func (l Layout) Bundle(name string) string { return filepath.Join(string(l), "bundles", name) }
func (l Layout) Rootfs(name string) string { return filepath.Join(string(l), "rootfs", name) }
func (l Layout) RW(name string) string     { return filepath.Join(string(l), "rw", name) }
func (l Layout) Records() string           { return filepath.Join(string(l), "containers") }
func (l Layout) StatusDir() string         { return filepath.Join(string(l), "status") }
func (l Layout) EventsDir() string         { return filepath.Join(string(l), "events") }
func (l Layout) Socket() string            { return filepath.Join(string(l), "reconciled.sock") }
func (l Layout) Lock() string              { return filepath.Join(string(l), "reconciled.lock") }
func (l Layout) Info() string              { return filepath.Join(string(l), "daemon.json") }
func (l Layout) CgroupParent() string      { return filepath.Join(string(l), "cgroup-parent.json") }

// Imports is STATE/imports.json, the import directory's records.
func (l Layout) Imports() string { return filepath.Join(string(l), "imports.json") }

// Notify is the directory of the notify sockets' ready records (one
// NAME.json per container that said READY=1 in its current run), so that
// a restarted daemon knows which of the running containers are ready:
// they said so once, to the daemon before it.
func (l Layout) Notify() string { return filepath.Join(string(l), "notify") }

// LogFile is container name's log file in the log directory dir.
func LogFile(dir, name string) string { return filepath.Join(dir, name+".log") }

// CgroupParent is where a daemon puts its containers' cgroups: a
// directory of its own under each hierarchy's root (cgroupfs) and a slice
// of its own (systemd). Two daemons with different state directories
// never share one, so neither touches the other's containers even when
// their names are the same. It is recorded in STATE/cgroup-parent.json
// (kept across restarts and upgrades; --cgroup-parent changes it for the
// containers created from then on). Containers that exist stay where
// they are: each one's runtime state records its own cgroup path.
type CgroupParent struct {
	// Version is the record's format (1).
	Version int `json:"version"`
	// Cgroupfs is the parent directory with the cgroupfs driver
	// ("/reconciled" for the default state directory).
	Cgroupfs string `json:"cgroupfs"`
	// Systemd is the slice with the systemd driver ("reconciled.slice"
	// for the default state directory).
	Systemd string `json:"systemd"`
}

// CgroupParentVersion is the format of STATE/cgroup-parent.json this
// release reads and writes.
const CgroupParentVersion = 1

// Path is the linux.cgroupsPath of container id for the driver named
// driver.
func (p CgroupParent) Path(driver, id string) string {
	return cgroups.PathIn(driver, p.Cgroupfs, p.Systemd, id)
}

// Of returns the parent as the driver named driver uses it.
func (p CgroupParent) Of(driver string) string {
	if driver == "systemd" {
		return p.Systemd
	}
	return p.Cgroupfs
}

// RecordedCgroupsPath returns where the daemon whose state directory is
// state puts container id's cgroup with the cgroupfs driver, as it
// recorded (nil when it recorded nothing there): `reconciled runtime
// --root STATE/runtime` finds a container whose runtime state is
// unreadable through it.
func RecordedCgroupsPath(state string) func(id string) string {
	data, err := os.ReadFile(Layout(state).CgroupParent())
	if err != nil {
		return nil
	}
	var p CgroupParent
	if json.Unmarshal(data, &p) != nil || p.Version != CgroupParentVersion || p.Cgroupfs == "" {
		return nil
	}
	return func(id string) string { return p.Path("cgroupfs", id) }
}
