package daemon

import "path/filepath"

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

// LogFile is container name's log file in the log directory dir.
func LogFile(dir, name string) string { return filepath.Join(dir, name+".log") }
