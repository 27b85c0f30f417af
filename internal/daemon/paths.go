package daemon

import "reconciled.dev/reconciled/internal/statedir"

// Defaults of the command line (statedir holds them, shared with the
// runtime command line).
const (
	DefaultManifests = statedir.DefaultManifests
	DefaultState     = statedir.DefaultState
	DefaultLogDir    = statedir.DefaultLogDir
)

// Layout is where things live under a state directory (statedir.Layout).
type Layout = statedir.Layout

// LogFile is container name's log file in the log directory dir.
func LogFile(dir, name string) string { return statedir.LogFile(dir, name) }
